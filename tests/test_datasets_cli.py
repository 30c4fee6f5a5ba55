"""``bench data build | info``: CliRunner on tiny datasets, one-line errors through ``bench.cli.main``."""

from __future__ import annotations

import sys

import pytest
from typer.testing import CliRunner

import bench.cli
from bench.cli import error_message
from bench.cli.apps import app
from bench.datasets.stamps import StampsConfig, cache_root
from bench.errors import BenchError
from tests.test_datasets_voc import write_voc

runner = CliRunner()


def invoke(*args: str):
    return runner.invoke(app, list(args), env={"COLUMNS": "200"})


def test_build_then_info_stamps(tmp_path):
    args = ["--seed", "3", "--n-train", "12", "--n-test", "6"]
    before = invoke("data", "info", "stamps", "--image-size", "48", *args, "--data-root", str(tmp_path))
    assert before.exit_code != 0 and not any(tmp_path.iterdir()), "info builds nothing"
    assert "bench data build stamps --image-size 48 --seed 3 --n-train 12 --n-test 6" in str(before.exception)
    result = invoke("data", "build", "stamps", "--image-size", "48", *args, "--data-root", str(tmp_path))
    assert result.exit_code == 0, f"build failed: {result.output}\n{result.exception!r}"
    folder = next(p for p in tmp_path.iterdir() if (p / "manifest.json").is_file())
    assert f"files: {folder}" in result.output.replace("\n", ""), (
        f"build does not say where the files are: {result.output}"
    )
    result = invoke("data", "info", "stamps", "--image-size", "48", *args, "--data-root", str(tmp_path), "--check")
    assert result.exit_code == 0, f"info failed: {result.output}\n{result.exception!r}"
    out = result.output
    for text in (
        "stamps train: 12 images at 48 px",
        "stamps test: 6 images at 48 px",
        "label frequencies",
        "0 of 6 images do not decode",
    ):
        assert text in out, f"{text!r} missing from:\n{out}"
    assert "animal" in out and "abstract" in out, f"abstract nodes missing from the frequency table:\n{out}"


def test_info_voc_counts_undecodable_images(tmp_path):
    base = write_voc(tmp_path)
    (base / "JPEGImages" / "000004.jpg").write_bytes(b"garbage")
    result = invoke("data", "info", "voc", "--data-root", str(tmp_path), "--check", "--top", "5")
    assert result.exit_code == 0, f"info failed: {result.output}\n{result.exception!r}"
    assert "voc test: 3 images at 224 px" in result.output, result.output
    assert "1 of 3 images do not decode" in result.output, result.output


@pytest.mark.parametrize(
    "args, message",
    [
        (["data", "build", "voc"], "only 'stamps' is generated"),
        (["data", "info", "vco"], "unknown dataset 'vco' (did you mean 'voc'"),
        (["data", "info", "nus", "--year", "2012"], "--year is not an option of dataset 'nus'"),
    ],
)
def test_user_mistakes_are_bench_errors(args, message):
    result = invoke(*args)
    assert isinstance(result.exception, BenchError) and message in error_message(result.exception), (
        f"{args}: {result.exception!r}"
    )


def test_main_prints_one_line_and_exits_2(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(sys, "argv", ["bench", "data", "info", "voc", "--data-root", str(tmp_path / "missing")])
    with pytest.raises(SystemExit) as exit_:
        bench.cli.main()
    err = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert exit_.value.code == 2, f"exit code {exit_.value.code}"
    assert len(err) == 1 and "voc data root" in err[0] and "missing" in err[0], f"stderr: {err}"


def test_default_cache_is_under_the_data_dir(bench_data_dir):
    assert cache_root() == bench_data_dir / "datasets" / "stamps", "stamps cache is not under $BENCH_DATA"
    assert StampsConfig().size == 128, "default image size is not the issue's 128 px"


def test_cli_stamps_defaults_match_the_dataset():
    from bench.cli.datasets import STAMPS_DEFAULTS
    from bench.datasets.stamps import StampsConfig

    assert STAMPS_DEFAULTS == {k: getattr(StampsConfig, k) for k in STAMPS_DEFAULTS}, (
        "bench data build's defaults drifted from StampsConfig"
    )
