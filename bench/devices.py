"""Devices: one parser for every ``--device`` and every library entry point."""

from __future__ import annotations

import torch

from bench.errors import InvalidValue


def resolve_device(spec: str | torch.device | None = "auto") -> torch.device:
    """``auto``/``None`` (CUDA when available), ``cpu``, ``cuda`` or ``cuda:i``; one line for anything else."""
    if isinstance(spec, torch.device):
        spec = str(spec)
    if spec is not None and not spec.strip():
        raise InvalidValue("device", spec, "use auto, cpu, cuda or cuda:INDEX")
    spec = (spec or "auto").strip().lower()
    if spec == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(spec)
    except RuntimeError:
        raise InvalidValue("device", spec, "use auto, cpu, cuda or cuda:INDEX") from None
    if device.type not in ("cpu", "cuda"):
        raise InvalidValue("device", spec, "use auto, cpu, cuda or cuda:INDEX")
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise InvalidValue("device", spec, "CUDA is not available on this machine; use cpu (or auto)")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise InvalidValue("device", spec, f"this machine has {torch.cuda.device_count()} CUDA device(s)")
    return device
