"""The README's "Reproducing the paper" steps, run as printed in bash, on a small VOCdevkit the
test writes under ``~/data`` (HOME is the test's folder), with only size options appended."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

from tests.test_datasets_voc import write_voc

ROOT = Path(__file__).resolve().parents[1]
# Size options per command (appended; everything else is the README's own text).
SIZES = {
    "bench train": "--epochs 2 --batch-size 4 --image-size 32",
    "bench run": "--iterations 2 --images-per-combo 1 --lp-iterations 1 --dp-iterations 2",
}


def readme_steps() -> list[str]:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    section = text.split("## Reproducing the paper", 1)[1].split("\n## ", 1)[0]
    (block,) = re.findall(r"```bash\n(.*?)```", section, flags=re.S)
    return [line.split("  #")[0].strip() for line in block.splitlines() if line.startswith("bench ")]


def test_the_readme_steps_run_as_printed(tmp_path):
    # 40 images of the same three objects: a model learns them in two short epochs, so its
    # predictions are consistent and the size-3 combination of them is eligible.
    objects = {f"{i:06d}": [("person", 0), ("dog", 0), ("car", 0)] for i in range(1, 41)}
    ids = list(objects)
    write_voc(tmp_path / "data", ids=objects, splits={"train": ids[:32], "test": ids[32:]}, size=(48, 40))
    steps = readme_steps()
    assert [s.split()[1] for s in steps] == ["kg", "train", "run", "table", "sql"], steps
    env = {
        **os.environ,
        "HOME": str(tmp_path),
        "BENCH_DATA": str(tmp_path / "bench-data"),
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
        "COLUMNS": "200",
    }
    outputs = []
    for step in steps:
        extra = next((v for k, v in SIZES.items() if step.startswith(k + " ")), "")
        done = subprocess.run(
            ["bash", "-c", f"{step} {extra}"], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600
        )
        assert done.returncode == 0, f"{step} {extra}\n{done.stdout}\n{done.stderr}"
        outputs.append(done.stdout)
    latex = (tmp_path / "table1.tex").read_text(encoding="utf-8")
    assert "GMLA" in latex and "MLA-U" in latex and r"\\" in latex, latex
    sql = outputs[-1]
    for attack in ("gmla", "mla-u", "mla-c", "ml-dp", "mla-lp", "gmla-alpha", "gmla-beta"):
        assert re.search(rf"│ {re.escape(attack)}\s+│", sql), f"{attack} has a row in the README's SQL: {sql}"
