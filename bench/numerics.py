"""CPU numerics: the code path torch's CPU kernels take, pinned on request, and the fingerprint
of the machine that computed a run's rows.

A float32 result's last bits depend on the vector code path of three libraries: MKL (matrix
products), oneDNN (convolutions) and ATen's own kernels (element-wise ops, reductions). Each
picks the widest path the CPU has, so an AVX-512 Intel Xeon and an AVX2 AMD EPYC round
differently, and MKL's path may even change with a matrix's number of rows.

Outside MKL's *strict* mode, a row's bits even depend on its position in the batch on some of
MKL's code paths (measured: the AVX2 and SSE4.2 paths give the last rows of a matrix product,
the tail of a 6-row kernel, other bits), which would break the reproducibility contract (a
pair's row does not depend on the slot it lands in) on every CPU that takes them.

``native`` (the default) keeps each CPU's widest code path but turns on MKL's strict
reproducibility: ``MKL_CBWR=AUTO,STRICT`` (a branch the user set, e.g. ``MKL_CBWR=AVX2``, is
kept and made strict; on the SSE4.2 and AVX paths, where that is not enough, MKL's compatible
path: ``native_branch``). ``portable`` pins all three libraries to AVX2, which every x86-64
server CPU of the last decade has, with MKL's strict mode:

    MKL_CBWR=AVX2,STRICT   ONEDNN_MAX_CPU_ISA=AVX2   ATEN_CPU_CAPABILITY=avx2

The libraries read these once, when torch first runs a kernel, so they must be in the
environment before that: the ``bench`` command pins them before it parses anything
(``pin_from_argv``), Ray workers get them in their ``runtime_env``, and a Python caller calls
``pin(mode)`` before its first tensor operation (``require`` refuses a portable run where it
came too late, and warns when MKL is not strict). This module imports torch only inside
functions for that reason.
"""

from __future__ import annotations

import ctypes
import hashlib
import json
import os
import platform
import warnings
from collections.abc import Mapping, Sequence
from functools import cache
from typing import Any

from bench.errors import BenchError, InvalidValue

MODES = ("native", "portable")
DEFAULT_MODE = "native"

#: The environment that pins the three libraries to one code path every x86-64 CPU has.
PORTABLE_ENV: Mapping[str, str] = {
    "MKL_CBWR": "AVX2,STRICT",
    "ONEDNN_MAX_CPU_ISA": "AVX2",
    "ATEN_CPU_CAPABILITY": "avx2",
}

#: Settings that make this CPU compute the way other CPUs do (``./setup.sh test`` reruns the
#: bitwise tests under each; ``native`` makes MKL's branch strict): MKL's other code paths, and
#: ATen's and oneDNN's AVX2 kernels (a CPU without AVX-512).
EMULATED_CPUS: Mapping[str, Mapping[str, str]] = {
    "mkl-avx2": {"MKL_CBWR": "AVX2"},
    "mkl-avx512": {"MKL_CBWR": "AVX512"},
    "mkl-sse4_2": {"MKL_CBWR": "SSE4_2"},
    "mkl-compatible": {"MKL_CBWR": "COMPATIBLE"},
    "aten-onednn-avx2": {"ATEN_CPU_CAPABILITY": "avx2", "ONEDNN_MAX_CPU_ISA": "AVX2"},
}

#: Fingerprint fields that are recorded but do not change a row's bits by the contract.
INFORMATIONAL = ("threads", "overridden", "cpu_flags")

# MKL's conditional-reproducibility branches (mkl_cbwr_get), by code.
_MKL_BRANCHES = {
    1: "OFF",
    2: "AUTO",
    3: "COMPATIBLE",
    4: "SSE2",
    6: "SSSE3",
    7: "SSE4_1",
    8: "SSE4_2",
    9: "AVX",
    10: "AVX2",
    11: "AVX512_MIC",
    12: "AVX512",
    13: "AVX512_MIC_E1",
    14: "AVX512_E1",
}
_MKL_STRICT = 0x10000
# Branches on which MKL's strict mode still gives a product's rows other bits by their position
# (measured with torch 2.14.1's MKL 2024.2: SSE4_2, and AVX, which MKL runs as SSE4_2).
SLOT_DEPENDENT = {"SSE4_2", "AVX"}

# What `pin` replaced of the user's own environment in this process (the run notes it).
_replaced: dict[str, str] = {}


def check_mode(mode: str) -> str:
    if mode not in MODES:
        raise InvalidValue("cpu_numerics", mode, f"choose {' or '.join(MODES)}")
    return mode


def strict(branch: str) -> str:
    """An ``MKL_CBWR`` value with MKL's strict mode added (``AVX2`` → ``AVX2,STRICT``)."""
    parts = [p.strip().upper() for p in branch.split(",") if p.strip()] or ["AUTO"]
    return ",".join(parts if "STRICT" in parts else [*parts, "STRICT"])


def native_branch(setting: str) -> str:
    """Native mode's ``MKL_CBWR``: the branch ``setting`` names (the CPU's own for ``AUTO`` or
    none) in strict mode; on the SSE4.2 and AVX paths, where strict mode still ties a row's bits
    to its slot (measured, ``tests/test_numerics.py``), MKL's compatible path instead."""
    wanted = strict(setting)
    branch = wanted.split(",")[0]
    if branch == "AUTO":
        branch = auto_branch()
    return "COMPATIBLE,STRICT" if branch in SLOT_DEPENDENT else wanted


def mode_env(mode: str) -> dict[str, str]:
    """The environment ``mode`` needs (``pin`` sets it here; Ray workers get it in their
    ``runtime_env``): portable's three settings, or native's strict MKL on the branch this
    environment names (``native_branch``)."""
    if check_mode(mode) == "portable":
        return dict(PORTABLE_ENV)
    return {"MKL_CBWR": native_branch(os.environ.get("MKL_CBWR", ""))}


def pin(mode: str) -> dict[str, str]:
    """Put ``mode``'s settings in this process's environment (before torch runs a kernel).

    ``portable`` overrides whatever the environment says; returns the user's settings it
    replaced (also kept for the run's fingerprint). ``native`` keeps the user's MKL branch and
    makes it strict.
    """
    wanted = mode_env(mode)
    replaced = {k: os.environ[k] for k, v in wanted.items() if os.environ.get(k, v) != v}
    os.environ.update(wanted)
    if mode != "portable":
        return {}
    _replaced.update(replaced)
    return replaced


def replaced_settings() -> dict[str, str]:
    """The user's own settings that ``pin`` replaced in this process."""
    return dict(_replaced)


def mode_in_argv(argv: Sequence[str]) -> str | None:
    """The value of ``--cpu-numerics`` in a command line, if any (``--cpu-numerics X`` or ``=X``)."""
    for i, arg in enumerate(argv):
        if arg == "--":
            break
        if arg == "--cpu-numerics" and i + 1 < len(argv):
            return argv[i + 1]
        if arg.startswith("--cpu-numerics="):
            return arg.split("=", 1)[1]
    return None


def pin_from_argv(argv: Sequence[str]) -> None:
    """The CLI's first step: pin ``--cpu-numerics`` (native when not given) before any command
    runs a torch kernel (a wrong value is left for the option parser to report)."""
    mode = mode_in_argv(argv) or DEFAULT_MODE
    pin(mode if mode in MODES else DEFAULT_MODE)


# --------------------------------------------------------------------------- what is in effect
@cache
def _torch_cpu_library() -> ctypes.CDLL | None:
    import torch

    path = os.path.join(os.path.dirname(torch.__file__), "lib", "libtorch_cpu.so")
    try:
        return ctypes.CDLL(path)
    except OSError:
        return None


def auto_branch() -> str:
    """The code path MKL picks for this CPU (reading it does not fix MKL's mode: ``pin`` can
    still set it afterwards)."""
    lib = _torch_cpu_library()
    get = getattr(lib, "mkl_serv_cbwr_get_auto_branch", None) if lib is not None else None
    return _MKL_BRANCHES.get(get(), "AUTO") if get is not None else "AUTO"


def mkl_branch() -> str:
    """MKL's code path in this process, as ``MKL_CBWR`` spells it (``AUTO`` = the CPU's own),
    or ``n/a`` where torch was built without MKL."""
    lib = _torch_cpu_library()
    get = getattr(lib, "mkl_serv_cbwr_get", None) if lib is not None else None
    if get is None:
        return "n/a"
    get.argtypes, get.restype = [ctypes.c_int], ctypes.c_int
    value = get(-1)  # MKL_CBWR_ALL: the branch and the STRICT bit
    branch = _MKL_BRANCHES.get(value & 0xFFFF, str(value & 0xFFFF))
    if branch == "OFF":
        branch = "AUTO"  # no CNR mode: MKL dispatches on the CPU at each call
    return branch + (",STRICT" if value & _MKL_STRICT else "")


def aten_capability() -> str:
    import torch

    return str(torch.backends.cpu.get_cpu_capability())


def onednn_isa() -> str:
    """oneDNN's ceiling as configured (oneDNN reads it once and offers no query): the
    environment's ``ONEDNN_MAX_CPU_ISA``, else ``ALL`` (the CPU's widest)."""
    return os.environ.get("ONEDNN_MAX_CPU_ISA", os.environ.get("DNNL_MAX_CPU_ISA", "ALL")).upper()


def effective_mode() -> str:
    """``portable`` when MKL and ATen run on the pinned path in this process, else ``native``."""
    pinned = mkl_branch() == PORTABLE_ENV["MKL_CBWR"] and aten_capability() == "AVX2"
    return "portable" if pinned and onednn_isa() == PORTABLE_ENV["ONEDNN_MAX_CPU_ISA"] else "native"


def require(mode: str) -> None:
    """Refuse to compute in ``portable`` mode when this process's libraries did not take the
    pinned path (``pin`` came after torch's first kernel); warn when MKL runs without its
    strict mode (rows may then depend on their slot in the batch on some CPUs)."""
    mkl = mkl_branch()
    if check_mode(mode) == "native" and not mkl.endswith(",STRICT") and mkl != "n/a":
        warnings.warn(
            f"MKL runs without its strict reproducibility mode here ({mkl}): on CPUs whose MKL code path "
            "is AVX2 or SSE4.2 a row may then depend on its slot in the batch; call bench.numerics.pin('native') "
            "before torch's first kernel (the `bench` command does)",
            RuntimeWarning,
            stacklevel=2,
        )
    if mode == "portable" and effective_mode() != "portable":
        found = f"MKL {mkl}, ATen {aten_capability()}, oneDNN {onednn_isa()}"
        raise BenchError(
            f"portable CPU numerics were asked for, but this process computes with {found}: torch ran a "
            "kernel before they were pinned; call bench.numerics.pin('portable') before any tensor operation "
            "(the `bench` command does), or set " + " ".join(f"{k}={v}" for k, v in PORTABLE_ENV.items())
        )


# --------------------------------------------------------------------------- fingerprint
@cache
def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as fh:
            for line in fh:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


@cache
def cpu_flags() -> str:
    """The CPU's widest vector extensions (informational: the code paths say what was used)."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as fh:
            flags = next((line.split(":", 1)[1].split() for line in fh if line.startswith("flags")), [])
    except OSError:
        return ""
    wanted = ("avx2", "avx512f", "avx512_bf16", "avx512_fp16", "amx_tile", "amx_bf16")
    return " ".join(f for f in wanted if f in flags)


@cache
def library_versions() -> dict[str, str]:
    import torch

    versions = {"torch": torch.__version__, "mkl": "n/a", "onednn": "n/a"}
    for line in torch.__config__.show().splitlines():
        line = line.strip(" -")
        if "Math Kernel Library Version" in line:
            versions["mkl"] = line.split("Version", 1)[1].split()[0].split("-")[0]
        elif line.startswith(("Intel(R) MKL-DNN v", "oneDNN v")):
            versions["onednn"] = line.split(" v", 1)[1].split()[0]
    return versions


def fingerprint(device: Any, precision: str, batch: int, mode: str) -> dict[str, Any]:
    """What decides a row's bits besides its inputs (the reproducibility contract's "machine").

    Every field but ``INFORMATIONAL`` ones enters ``machine_id``.
    """
    import torch

    device = torch.device(device)
    fp: dict[str, Any] = {
        "device": device.type,
        "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else cpu_model(),
        "cpu": cpu_model(),
        "mkl_path": mkl_branch(),
        "onednn_path": onednn_isa(),
        "aten_path": aten_capability(),
        **library_versions(),
        "precision": precision,
        "batch": int(batch),
        "cpu_numerics": check_mode(mode),
        "threads": torch.get_num_threads(),
        "cpu_flags": cpu_flags(),
    }
    if device.type == "cuda":
        fp["cuda"] = f"{torch.version.cuda} cudnn {torch.backends.cudnn.version()}"
    if _replaced:
        fp["overridden"] = replaced_settings()
    return fp


def deciding(fp: Mapping[str, Any]) -> dict[str, Any]:
    """The fields that decide a row's bits: all but ``INFORMATIONAL`` ones, and on a CPU in
    ``portable`` mode not the CPU's model either (the pinned code path is the same on each)."""
    skip = set(INFORMATIONAL)
    if fp.get("cpu_numerics") == "portable" and fp.get("device") == "cpu":
        skip |= {"cpu", "device_name"}
    return {k: v for k, v in fp.items() if k not in skip}


def machine_id(fp: Mapping[str, Any]) -> str:
    """12 hex digits naming the fingerprint's deciding fields."""
    return hashlib.sha256(json.dumps(deciding(fp), sort_keys=True).encode()).hexdigest()[:12]


def differences(a: Mapping[str, Any], b: Mapping[str, Any]) -> list[str]:
    """``"field: a != b"`` for each deciding field that differs."""
    a, b = deciding(a), deciding(b)
    return [f"{k}: {a.get(k, '-')} != {b.get(k, '-')}" for k in dict.fromkeys([*a, *b]) if a.get(k) != b.get(k)]


def describe(fp: Mapping[str, Any]) -> str:
    """One line for provenance: device, code paths, versions, precision, B, mode."""
    paths = f"MKL {fp.get('mkl_path')}, oneDNN {fp.get('onednn_path')}, ATen {fp.get('aten_path')}"
    where = fp.get("device_name") if fp.get("device") == "cuda" else fp.get("cpu")
    return (
        f"{fp.get('device')} ({where}); {paths}; torch {fp.get('torch')}, MKL {fp.get('mkl')}; "
        f"{fp.get('precision')}, B = {fp.get('batch')}, cpu-numerics {fp.get('cpu_numerics')}"
    )
