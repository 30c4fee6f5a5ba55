"""CPU numerics: the code path torch's CPU kernels take, pinned on request, and the numerics a
run's rows were computed under (``row_numerics``: the machine with its code paths, the precision
and B; its ``row_numerics_id`` is what the results' ``machine`` column holds).

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
path: ``native_branch``). ``portable`` pins all three libraries to paths that take effect on
every x86-64 vendor (read back on Intel and AMD; MKL honours a named branch such as ``AVX2``
only on Intel CPUs, its ``COMPATIBLE`` path everywhere):

    MKL_CBWR=COMPATIBLE,STRICT   ONEDNN_MAX_CPU_ISA=AVX2   ATEN_CPU_CAPABILITY=default

The libraries read these once, when torch first runs a kernel, so they must be in the
environment before that: the ``bench`` command pins them before it parses anything
(``pin_from_argv``), Ray workers get them in their ``runtime_env``, and a Python caller calls
``pin(mode)`` before its first tensor operation (``require`` refuses a portable run whose
libraries read back another path, naming which and why, and warns when MKL is not strict).
This module imports torch only inside functions for that reason.
"""

from __future__ import annotations

import ctypes
import hashlib
import json
import os
import platform
import subprocess
import sys
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import cache
from typing import Any

from bench.errors import BenchError, InvalidValue

MODES = ("native", "portable")
DEFAULT_MODE = "native"

#: The environment that pins the three libraries to code paths that take effect on every x86-64
#: vendor (MKL ignores a named branch such as ``AVX2`` on AMD CPUs; its compatible path is
#: honoured everywhere), and ATen on its unvectorised kernels (its AVX2 ones give a row other
#: bits by its batch-mates in one known case: ``tests/test_engine.py``).
PORTABLE_ENV: Mapping[str, str] = {
    "MKL_CBWR": "COMPATIBLE,STRICT",
    "ONEDNN_MAX_CPU_ISA": "AVX2",
    "ATEN_CPU_CAPABILITY": "default",
}

#: Which library reads which variable, and how its code path is named when read back.
LIBRARIES: Mapping[str, str] = {"MKL_CBWR": "MKL", "ONEDNN_MAX_CPU_ISA": "oneDNN", "ATEN_CPU_CAPABILITY": "ATen"}

#: Settings that may make this CPU compute the way other CPUs do. ``./setup.sh test`` reruns
#: the bitwise tests under each one that takes effect here (``emulations``: read back in a
#: fresh process, the native pin on top as in the tests; MKL honours its branch names only on
#: Intel CPUs), once per distinct set of code paths. (MKL's SSE4.2 path is not among them:
#: native mode runs it as the compatible path.)
EMULATED_CPUS: Mapping[str, Mapping[str, str]] = {
    "mkl-avx2": {"MKL_CBWR": "AVX2"},
    "mkl-avx512": {"MKL_CBWR": "AVX512"},
    "mkl-compatible": {"MKL_CBWR": "COMPATIBLE"},
    "aten-onednn-avx2": {"ATEN_CPU_CAPABILITY": "avx2", "ONEDNN_MAX_CPU_ISA": "AVX2"},
    "aten-default": {"ATEN_CPU_CAPABILITY": "default"},
    "onednn-sse41": {"ONEDNN_MAX_CPU_ISA": "SSE41"},
}

#: Fingerprint fields that are recorded but do not change a row's bits by the contract.
INFORMATIONAL = ("threads", "overridden", "cpu_flags")
#: Fingerprint fields that name the CPU: not compared in portable mode (its promise).
CPU_FIELDS = ("cpu", "device_name", "cpu_vendor", "cpu_isa")

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
    """ATen's vector code path, read back (``DEFAULT``, ``AVX2``, ``AVX512``)."""
    import torch

    return str(torch.backends.cpu.get_cpu_capability())


def _onednn_name(isa: str) -> str:
    """oneDNN's description of its ISA (its verbose header) as ``ONEDNN_MAX_CPU_ISA`` names it."""
    if "AMX" in isa:
        return "AVX512_CORE_AMX_FP16" if "float16 and 8-bit" in isa or "bfloat16, float16" in isa else "AVX512_CORE_AMX"
    for prefix, name in (("Intel AVX-512", "AVX512_CORE"), ("Intel AVX2", "AVX2")):
        if isa.startswith(prefix):
            if "float16," in isa or (name == "AVX2" and "bfloat16" in isa):
                return f"{name}_FP16" if name == "AVX512_CORE" else "AVX2_VNNI_2"
            if "bfloat16" in isa:
                return f"{name}_BF16"
            return f"{name}_VNNI" if "DL Boost" in isa else name
    return {"Intel AVX": "AVX", "Intel SSE4.1": "SSE41"}.get(isa.strip(), isa.strip())


@cache
def onednn_isa() -> str:
    """oneDNN's code path, read back: the ISA its verbose header names at one small convolution
    (oneDNN has no query of its own torch exposes), as ``ONEDNN_MAX_CPU_ISA`` spells it
    (``AVX2``, ``AVX512_CORE_BF16``...); ``unread (SETTING)`` where the header did not come (an
    ``ONEDNN_VERBOSE`` of the user's printed it before), which matches no pinned path."""
    import tempfile

    import torch

    configured = os.environ.get("ONEDNN_MAX_CPU_ISA", os.environ.get("DNNL_MAX_CPU_ISA", "ALL")).upper()
    if not torch.backends.mkldnn.is_available():
        return "n/a"
    x, w = torch.zeros(2, 3, 16, 16), torch.zeros(4, 3, 3, 3)
    with tempfile.TemporaryFile() as out:
        sys.stdout.flush()
        saved = os.dup(1)
        os.dup2(out.fileno(), 1)  # oneDNN writes its header to the C library's stdout
        try:
            with torch.backends.mkldnn.verbose(torch.backends.mkldnn.VERBOSE_ON):
                torch.nn.functional.conv2d(x, w)
            ctypes.CDLL(None).fflush(None)  # C's stdout is block-buffered into a file or pipe
        finally:
            os.dup2(saved, 1)
            os.close(saved)
        out.seek(0)
        header = [line for line in out.read().decode(errors="replace").splitlines() if ",cpu,isa:" in line]
    return _onednn_name(header[0].split(",cpu,isa:", 1)[1]) if header else f"unread ({configured})"


def library_paths() -> dict[str, str]:
    """The code path each library runs in this process, read back, by the variable that sets it."""
    return {"MKL_CBWR": mkl_branch(), "ONEDNN_MAX_CPU_ISA": onednn_isa(), "ATEN_CPU_CAPABILITY": aten_capability()}


def read_back(setting: str, value: str) -> str:
    """What ``setting = value`` reads back as, where it takes effect (``MKL_CBWR=avx2`` →
    ``AVX2``, ``ATEN_CPU_CAPABILITY=default`` → ``DEFAULT``)."""
    value = value.strip().upper()
    return ",".join(p.strip() for p in value.split(",")) if setting == "MKL_CBWR" else value


#: What portable mode's settings read back as where they take effect.
PORTABLE_PATHS: Mapping[str, str] = {k: read_back(k, v) for k, v in PORTABLE_ENV.items()}


def effective_mode() -> str:
    """``portable`` when all three libraries run on the pinned paths in this process, else ``native``."""
    return "portable" if library_paths() == dict(PORTABLE_PATHS) else "native"


def probe_paths(env: Mapping[str, str]) -> dict[str, str]:
    """The code paths a fresh process started with ``env`` reads back (``{}`` where it fails)."""
    try:
        return dict(run_probe(env)["paths"])
    except BenchError:
        return {}


def cpu_name() -> str:
    """The CPU as a refusal names it: ``AMD EPYC (AuthenticAMD, AVX2)``."""
    return f"{cpu_model()} ({cpu_vendor()}, {cpu_isa()})"


def why_not_pinned(paths: Mapping[str, str]) -> list[str]:
    """For each library off portable's path in this process, the true reason: the environment
    says otherwise, the library ignores the setting on this CPU (a fresh process reads back the
    same), or it read the setting before ``pin`` set it (a fresh process takes the path)."""
    wrong = {k: v for k, v in paths.items() if v != PORTABLE_PATHS[k]}
    if not wrong:
        return []
    reasons = [
        f"{LIBRARIES[k]} runs {found}: {k} is {os.environ.get(k, 'unset')} here, not {PORTABLE_ENV[k]}"
        for k, found in wrong.items()
        if os.environ.get(k) != PORTABLE_ENV[k]
    ]
    pinned = {k: found for k, found in wrong.items() if os.environ.get(k) == PORTABLE_ENV[k]}
    fresh = probe_paths({**os.environ, **PORTABLE_ENV}) if pinned else {}
    late = {k: found for k, found in pinned.items() if fresh.get(k) == PORTABLE_PATHS[k]}
    for key, found in pinned.items():
        if key not in late:
            reasons.append(
                f"{LIBRARIES[key]} ignores {key}={PORTABLE_ENV[key]} on this CPU, {cpu_name()}: it reads back "
                f"{fresh.get(key, found)}, also in a fresh process"
            )
    if late:
        runs = ", ".join(f"{LIBRARIES[k]} runs {found}" for k, found in late.items())
        reasons.append(
            f"{runs}: torch ran a kernel before bench.numerics.pin('portable') set {', '.join(late)} "
            "(a fresh process takes the pinned paths)"
        )
    return reasons


def require(mode: str) -> None:
    """Refuse to compute in ``portable`` mode when a library of this process does not run the
    pinned path, with the true reason (``why_not_pinned``); warn when MKL runs without its
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
    if mode == "portable":
        reasons = why_not_pinned(library_paths())
        if reasons:
            raise BenchError("portable CPU numerics cannot be kept here: " + "; ".join(reasons))


# --------------------------------------------------------------------------- row numerics
def _cpuinfo(field: str) -> str:
    """The first value of ``field`` in /proc/cpuinfo ('' where there is none)."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as fh:
            return next((line.split(":", 1)[1].strip() for line in fh if line.split(":", 1)[0].strip() == field), "")
    except OSError:
        return ""


@cache
def cpu_model() -> str:
    return _cpuinfo("model name") or platform.processor() or platform.machine()


@cache
def cpu_vendor() -> str:
    """``Intel``, ``AMD``, or the CPU's own vendor string (the machine type off x86)."""
    vendor = _cpuinfo("vendor_id")
    return {"GenuineIntel": "Intel", "AuthenticAMD": "AMD"}.get(vendor, vendor or platform.machine())


@cache
def cpu_isa() -> str:
    """The CPU's widest vector class: ``AVX-512 + AMX``, ``AVX-512``, ``AVX2`` (AVX2 only), ``AVX``,
    ``SSE4.2``, else the machine type. A virtual machine may hide extensions its host has: this
    is what the guest sees, which is what the libraries dispatch on."""
    flags = set(_cpuinfo("flags").split())
    for flag, isa in (("amx_tile", "AVX-512 + AMX"), ("avx512f", "AVX-512"), ("avx2", "AVX2"), ("avx", "AVX")):
        if flag in flags:
            return isa
    return "SSE4.2" if "sse4_2" in flags else platform.machine()


@cache
def cpu_flags() -> str:
    """The CPU's widest vector extensions (informational: the code paths say what was used)."""
    flags = _cpuinfo("flags").split()
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


#: A ``row_numerics`` fingerprint: field → value, as stored (JSON) in the ``machines`` table.
RowNumerics = dict[str, Any]


def row_numerics(device: Any, precision: str, batch: int, mode: str) -> RowNumerics:
    """What decides a row's bits besides its inputs: the device and CPU, each library's code
    path and version, the precision, the pair batch size B (``batch``) and the CPU-numerics
    mode, with ``INFORMATIONAL`` fields recorded alongside.

    The results call this the *machine* (the reproducibility contract's word): the ``machine``
    column of ``results`` and the ``machines`` table hold ``row_numerics_id`` of it, the table
    also its JSON (``ResultStore.use_machine``). Precision and B are part of it because they
    change a row's bits as much as the hardware does (one CPU computes other bits in bf16 than
    in fp32, and at another B a matrix product may take another code path), so rows are
    promised equal, and may be mixed in one run, only where all of it agrees. The stored names
    and values stay as they are (every results file keeps its bits); only the Python names say
    what it is. Every field but ``INFORMATIONAL`` ones enters ``row_numerics_id``.
    """
    import torch

    device = torch.device(device)
    fp: dict[str, Any] = {
        "device": device.type,
        "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else cpu_model(),
        "cpu": cpu_model(),
        "cpu_vendor": cpu_vendor(),
        "cpu_isa": cpu_isa(),
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
    ``portable`` mode not the CPU's model, vendor or ISA either (the pinned code paths are the
    same on each: ``tests/data/portable-rows.json`` is the measurement)."""
    skip = set(INFORMATIONAL)
    if fp.get("cpu_numerics") == "portable" and fp.get("device") == "cpu":
        skip |= set(CPU_FIELDS)
    return {k: v for k, v in fp.items() if k not in skip}


def row_numerics_id(fp: Mapping[str, Any]) -> str:
    """12 hex digits naming a ``row_numerics`` fingerprint's deciding fields: the key the
    results' ``machine`` column and the ``machines`` table hold."""
    return hashlib.sha256(json.dumps(deciding(fp), sort_keys=True).encode()).hexdigest()[:12]


def differences(a: Mapping[str, Any], b: Mapping[str, Any]) -> list[str]:
    """``"field: a != b"`` for each deciding field that differs."""
    a, b = deciding(a), deciding(b)
    return [f"{k}: {a.get(k, '-')} != {b.get(k, '-')}" for k in dict.fromkeys([*a, *b]) if a.get(k) != b.get(k)]


def describe(fp: Mapping[str, Any]) -> str:
    """One line for provenance: device, code paths, versions, precision, B, mode."""
    paths = f"MKL {fp.get('mkl_path')}, oneDNN {fp.get('onednn_path')}, ATen {fp.get('aten_path')}"
    where = fp.get("device_name") if fp.get("device") == "cuda" else fp.get("cpu")
    if fp.get("device") != "cuda" and fp.get("cpu_vendor"):
        where = f"{where}, {fp.get('cpu_vendor')} {fp.get('cpu_isa')}"
    return (
        f"{fp.get('device')} ({where}); {paths}; torch {fp.get('torch')}, MKL {fp.get('mkl')}; "
        f"{fp.get('precision')}, B = {fp.get('batch')}, cpu-numerics {fp.get('cpu_numerics')}"
    )


# --------------------------------------------------------------------------- probe processes
# A fresh process under the native pin (as the tests run; it keeps a branch the environment
# names, strict): the code paths it reads back, and the digest of a small conv + linear +
# element-wise computation, forward and backward.
_PROBE = """
import hashlib, json
from bench import numerics
numerics.pin("native")
import torch
torch.set_num_threads(1)
g = torch.Generator().manual_seed(0)
x = torch.randn(4, 3, 16, 16, generator=g, requires_grad=True)
h = torch.nn.functional.conv2d(x, torch.randn(8, 3, 3, 3, generator=g))
y = torch.nn.functional.linear(torch.tanh(h).flatten(1), torch.randn(10, 8 * 14 * 14, generator=g) / 40)
y = torch.sigmoid(y).logsumexp(1)
y.sum().backward()
digest = hashlib.sha256(b"".join(t.detach().numpy().tobytes() for t in (h, y, x.grad))).hexdigest()[:16]
print(json.dumps({"paths": numerics.library_paths(), "digest": digest}))
"""


def run_probe(env: Mapping[str, str]) -> dict[str, Any]:
    """``{"paths": ..., "digest": ...}`` of ``_PROBE`` run in a fresh process started with ``env``."""
    done = subprocess.run([sys.executable, "-c", _PROBE], env=dict(env), capture_output=True, text=True, timeout=300)
    if done.returncode != 0:
        raise BenchError(f"the CPU-numerics probe failed: {(done.stderr.strip().splitlines() or ['?'])[-1]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


# --------------------------------------------------------------------------- emulated CPUs
@dataclass(frozen=True)
class Emulation:
    """One of ``EMULATED_CPUS`` as this machine takes it: the code paths a fresh process reads
    back with it (under the native pin, as in the tests), whether the bitwise reruns use it,
    why not, and whether it changes the bits of a small conv + linear + element-wise probe."""

    name: str
    settings: Mapping[str, str]
    paths: Mapping[str, str]
    used: bool
    why: str = ""
    changes_bits: bool = False

    def env(self) -> str:
        return " ".join(f"{k}={v}" for k, v in self.settings.items())

    def line(self) -> str:
        if not self.used:
            return f"{self.name} ({self.env()}): not used, {self.why}"
        paths = ", ".join(f"{LIBRARIES[k]} {self.paths[k]}" for k in self.settings)
        return f"{self.name} ({self.env()}): used, reads back {paths}; " + (
            "changes the probe's bits" if self.changes_bits else "the probe's bits unchanged"
        )


def emulations() -> list[Emulation]:
    """Which of ``EMULATED_CPUS`` take effect on this CPU, each read back in a fresh process: not
    one a library ignores here (MKL's branch names on AMD), nor one that runs this CPU's own
    paths or another used emulation's (it would emulate nothing)."""
    from concurrent.futures import ThreadPoolExecutor

    base = {k: v for k, v in os.environ.items() if k not in PORTABLE_ENV}
    envs = [base, *({**base, **settings} for settings in EMULATED_CPUS.values())]
    with ThreadPoolExecutor(max_workers=2) as pool:
        own, *probes = pool.map(run_probe, envs)
    found: list[Emulation] = []
    seen = {json.dumps(own["paths"], sort_keys=True): "this CPU's own paths"}
    for (name, settings), probe in zip(EMULATED_CPUS.items(), probes, strict=True):
        paths = probe["paths"]
        wanted = {k: native_branch(v) if k == "MKL_CBWR" else read_back(k, v) for k, v in settings.items()}
        ignored = [k for k, v in wanted.items() if paths[k] != v]
        key = json.dumps(paths, sort_keys=True)
        why = ""
        if ignored:
            why = "; ".join(
                f"{LIBRARIES[k]} ignores {k}={wanted[k]} on this CPU, {cpu_name()} (reads back {paths[k]})"
                for k in ignored
            )
        elif key in seen:
            why = f"the same code paths as {seen[key]}"
        else:
            seen[key] = name
        found.append(Emulation(name, settings, paths, not why, why, probe["digest"] != own["digest"]))
    return found


if __name__ == "__main__":  # python -m bench.numerics: the settings of the emulations this CPU takes
    survey = emulations()
    for emulation in survey:
        print(f"setup: emulated CPU {emulation.line()}", file=sys.stderr)
        if emulation.used:
            print(emulation.env())
