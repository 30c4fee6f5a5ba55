"""Plugins installed as packages: found through the entry-point group ``semattack_bench.plugins``.

Each test writes a real distribution into ``tmp_path`` (a package plus a ``*.dist-info`` folder
with ``entry_points.txt``) and puts ``tmp_path`` on ``sys.path``, where ``importlib.metadata``
finds it as it finds a pip-installed one; the CLI runs in a subprocess with that path, as the
``bench`` command of an environment holding the plugin would.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from bench.errors import BenchError, UnknownName
from bench.registry import PLUGIN_GROUP, PluginError, load_plugins

ROOT = Path(__file__).resolve().parents[1]
LAUNCH = "from bench.cli import main; main()"

ATTACK_MODULE = """
from bench.attacks.mla_u import MLAU
from bench.plugins import register_attack


@register_attack("ep-demo-attack")
class EpDemoAttack(MLAU):
    display_name = "EpDemo"
"""

MODEL_MODULE = '''
from bench.models.net import LinearHead, MultiLabelNet, pooled_width, timm_backbone
from bench.plugins import MODELS, register_model


def ep_demo_net(num_classes: int, image_size: int, width: int = 4) -> MultiLabelNet:
    """A plugin's model."""
    backbone = timm_backbone("resnet10t")
    return MultiLabelNet(backbone, LinearHead(pooled_width(backbone), num_classes))


def register():
    register_model("ep-demo-net", loss="bce", image_size=32)(ep_demo_net)
'''

CLASH_MODULE = """
from bench.attacks.mla_u import MLAU
from bench.plugins import register_attack


class Clash(MLAU):
    pass


def register():
    register_attack("gmla")(Clash)  # a name the package already has
"""


def write_distribution(root: Path, name: str, entry_points: dict[str, str], modules: dict[str, str]) -> None:
    """A distribution ``name`` 0.1 in ``root``: its modules and its metadata with ``entry_points``."""
    for module, text in modules.items():
        path = root / Path(*module.split("."))
        path.mkdir(parents=True, exist_ok=True)
        (path / "__init__.py").write_text(text, encoding="utf-8")
    info = root / f"{name.replace('-', '_')}-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: 0.1\n", encoding="utf-8")
    lines = [f"[{PLUGIN_GROUP}]", *(f"{k} = {v}" for k, v in entry_points.items())]
    (info / "entry_points.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")


def good_plugin(root: Path) -> None:
    write_distribution(
        root,
        "ep-demo-plugin",
        {"attacks": "ep_demo_plugin", "models": "ep_demo_plugin.models:register"},
        {"ep_demo_plugin": ATTACK_MODULE, "ep_demo_plugin.models": MODEL_MODULE},
    )


def broken_plugins(root: Path) -> None:
    write_distribution(
        root,
        "ep-broken-plugin",
        {"broken": "ep_broken_plugin", "clash": "ep_clash_plugin:register"},
        {"ep_broken_plugin": "import a_module_nobody_has\n", "ep_clash_plugin": CLASH_MODULE},
    )


@pytest.fixture
def installed(tmp_path, monkeypatch):
    """``install(write)``: the distribution ``write`` puts in ``tmp_path`` is installed, and the
    plugins load again; afterwards the registries, modules and plugin state are as before."""
    from bench.plugins import ATTACKS, MODELS

    before = {r: set(r.names(loaded_only=True)) for r in (ATTACKS, MODELS)}

    def install(write) -> list:
        write(tmp_path)
        monkeypatch.syspath_prepend(str(tmp_path))  # also invalidates the import caches
        return load_plugins(again=True)

    yield install
    for registry, names in before.items():
        for name in set(registry.names(loaded_only=True)) - names:
            registry.unregister(name)
    for module in [m for m in sys.modules if m.startswith(("ep_demo_plugin", "ep_broken_plugin", "ep_clash_plugin"))]:
        del sys.modules[module]
    monkeypatch.undo()
    assert load_plugins(again=True) == [], "no plugin installed once the test's path is gone"


def bench(tmp_path: Path, *args: str) -> subprocess.CompletedProcess:
    """The ``bench`` command with the distribution in ``tmp_path`` installed."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path), str(ROOT)]), "COLUMNS": "200"}
    return subprocess.run(
        [sys.executable, "-c", LAUNCH, *args], cwd=ROOT, env=env, text=True, capture_output=True, timeout=300
    )


def test_an_installed_plugin_registers_through_its_entry_points(installed):
    from bench.names import attack_display
    from bench.plugins import ATTACKS, MODELS, plugin_modules

    assert installed(good_plugin) == [], "both entry points load"
    attack = ATTACKS.get("ep-demo-attack")
    assert attack.__module__ == "ep_demo_plugin", f"the module entry point registered the attack: {attack!r}"
    assert attack_display("ep-demo-attack") == "EpDemo", "the plugin's display name"
    assert MODELS.get("ep-demo-net").build.__module__ == "ep_demo_plugin.models", "the function entry point ran"
    assert "ep-demo-attack" in ATTACKS.names() and "ep-demo-net" in MODELS.names(), "listings hold them"
    assert {"ep_demo_plugin", "ep_demo_plugin.models"} <= set(plugin_modules()), "child processes import them"
    assert load_plugins() == [] and ATTACKS.get("ep-demo-attack") is attack, "loaded once: a second call is a no-op"


@pytest.mark.slow
def test_the_bench_command_sees_an_installed_plugin(tmp_path):
    good_plugin(tmp_path)
    listed = bench(tmp_path, "models", "--available")
    assert listed.returncode == 0, f"bench models --available failed: {listed.stderr}"
    assert "ep-demo-net" in listed.stdout and "A plugin's model." in listed.stdout, (
        f"the plugin's model is not listed: {listed.stdout}"
    )
    typo = bench(tmp_path, "run", "--dataset", "stamps", "--attack", "ep-demo-atack")
    assert typo.returncode == 2, f"a misspelt attack is a user error: {typo.returncode} {typo.stderr}"
    assert "did you mean 'ep-demo-attack'" in typo.stderr, f"bench run does not know the plugin's attack: {typo.stderr}"


def test_a_plugin_that_fails_to_load_is_one_line_where_it_matters(installed):
    from bench.plugins import ATTACKS, MODELS

    failures = installed(broken_plugins)
    assert [f.name for f in failures] == ["broken", "clash"], f"each failing entry point is kept: {failures}"
    assert "ModuleNotFoundError: No module named 'a_module_nobody_has'" in failures[0].error, failures[0]
    assert "BenchError: attack 'gmla' is already registered" in failures[1].error, f"a raising function: {failures[1]}"
    assert failures[0].package == "ep-broken-plugin" and failures[0].target == "ep_broken_plugin", failures[0]

    # a registered name, membership and help texts: as if the plugins were not installed
    assert ATTACKS.get("gmla").__module__ == "bench.attacks.gmla", "the built-in attack kept its name"
    assert "gmla" in ATTACKS and "nope" not in ATTACKS, "membership answers"
    assert "resnet18" in MODELS.names(loaded_only=True), "a help text's list"

    # a name nobody has may be the broken plugin's: the unknown-name error says why
    with pytest.raises(UnknownName) as miss:
        ATTACKS.get("my-attack")
    text = str(miss.value)
    assert text.startswith("unknown attack 'my-attack'") and "plugin 'broken' (ep_broken_plugin" in text, text
    assert "\n" not in text, f"one line: {text!r}"

    # a listing would lack the plugin's names
    with pytest.raises(PluginError) as listing:
        MODELS.names()
    assert isinstance(listing.value, BenchError) and "\n" not in str(listing.value), f"one line: {listing.value}"
    assert str(listing.value).startswith("plugin 'broken' (ep_broken_plugin, package ep-broken-plugin) did not load")


@pytest.mark.slow
def test_the_bench_command_names_a_broken_plugin_in_one_line(tmp_path):
    broken_plugins(tmp_path)
    listed = bench(tmp_path, "models", "--available")
    assert listed.returncode == 2, f"a broken plugin is a user error: {listed.returncode} {listed.stderr}"
    lines = listed.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: plugin 'broken'"), f"one line, no traceback: {lines}"
    assert "No module named 'a_module_nobody_has'" in lines[0] and "'clash'" in lines[0], lines[0]
    unrelated = bench(tmp_path, "models")
    assert unrelated.returncode == 0, f"a command that picks nothing by name still works: {unrelated.stderr}"
