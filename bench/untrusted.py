"""Loading files a user hands in without running their code.

A pickle can name any Python callable and have it called while it loads. Checkpoints are read
with ``torch.load(weights_only=True)`` (tensors, containers and numpy scalars only) and the
ML-GCN word-embedding pickles with an unpickler that rebuilds numpy arrays and nothing else.
A file that needs more is refused with one line naming ``--trust-checkpoint``, the explicit
opt-in that loads it fully — which runs whatever code the file holds.
"""

from __future__ import annotations

import io
import pickle
import re
from pathlib import Path
from typing import Any

import numpy as np
import torch

from bench.errors import BenchError

# numpy's pieces of an array or a scalar in a pickle: nothing here calls user code
_NUMPY_GLOBALS = {
    ("numpy", "ndarray"),
    ("numpy", "dtype"),
    ("numpy.core.multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "_reconstruct"),
    ("numpy.core.multiarray", "scalar"),
    ("numpy._core.multiarray", "scalar"),
    ("numpy.core.numeric", "_frombuffer"),
    ("numpy._core.numeric", "_frombuffer"),
}


def _numpy_dtype_classes() -> list[type]:
    return [getattr(np.dtypes, name) for name in dir(np.dtypes) if name.endswith("DType")]


def _numpy_scalar_globals() -> list[Any]:
    core = getattr(np, "_core", None) or np.core
    return [core.multiarray.scalar, np.dtype, *_numpy_dtype_classes()]


def refused(path: Path, what: str, detail: str) -> BenchError:
    return BenchError(
        f"{what} {path} holds more than plain data ({detail}); loading it would run code from the file: "
        "pass {trust} only if you trust its source",
        options=["trust"],
    )


def torch_load(path: Path, what: str = "checkpoint", trust: bool = False) -> Any:
    """``torch.load`` on the CPU: tensors, containers and numpy scalars only, unless ``trust``."""
    try:
        with torch.serialization.safe_globals(_numpy_scalar_globals()):
            return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        named = re.search(r"GLOBAL ([\w.]+)", str(exc))
        if named is None:  # a damaged file, not a foreign object; torch's advice (weights_only=False) is not ours
            raise BenchError(f"{what} {path} does not load: not a PyTorch file, or cut or damaged") from None
        if not trust:
            raise refused(path, what, f"it names {named.group(1)}") from None
    return torch.load(path, map_location="cpu", weights_only=False)


class _Foreign(pickle.UnpicklingError):
    """The pickle names something beyond numpy's array parts (code it would call)."""


class _NumpyUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in _NUMPY_GLOBALS or (module == "numpy.dtypes" and name.endswith("DType")):
            return super().find_class(module, name)
        raise _Foreign(f"global {module}.{name} is not a numpy array part")


def load_array_pickle(path: Path, what: str = "pickle", trust: bool = False) -> Any:
    """A pickled numpy array (or list of numbers), rebuilt without calling anything else unless ``trust``."""
    data = path.read_bytes()
    try:
        return pickle.loads(data) if trust else _NumpyUnpickler(io.BytesIO(data)).load()
    except _Foreign as exc:
        raise refused(path, what, str(exc)) from None
    except Exception as exc:  # anything else a byte string makes the unpickler raise: not a pickle
        first = (str(exc).splitlines() or [type(exc).__name__])[0]
        raise BenchError(f"{what} {path} does not load: not a pickle, or cut or damaged ({first})") from None
