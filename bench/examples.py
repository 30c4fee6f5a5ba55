"""Adversarial examples on disk: what `bench run --save-images N` and `bench attack --save DIR`
write, and what `bench report` shows.

One example is a stem with four files: ``STEM.npz`` (``clean`` and ``adv`` images as uint8
``[H, W, 3]`` for viewing, the adversarial image as the model saw it ``adv_float``
``[3, H, W]`` float32, the perturbation ``delta`` as float32, the clean and adversarial logits, the
masks ``omega`` and ``psi`` over the model's outputs, the output names, ε and the attack's
name) and three PNGs: ``STEM-clean.png``, ``STEM-adv.png`` and ``STEM-delta.png`` (the
perturbation scaled so that ±ε spans the grey range, 0 is mid-grey).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import numpy as np
from PIL import Image
from torch import Tensor

from bench.fileio import atomic_write


def to_uint8(image: Tensor | np.ndarray) -> np.ndarray:
    """``[3, H, W]`` in [0, 1] → ``[H, W, 3]`` uint8."""
    array = image.detach().float().cpu().numpy() if isinstance(image, Tensor) else np.asarray(image, dtype=np.float32)
    return (np.clip(array.transpose(1, 2, 0), 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)


def delta_picture(delta: np.ndarray, eps: float) -> np.ndarray:
    """The perturbation ``[3, H, W]`` magnified: ±scale ↦ 0…255, 0 ↦ 128 (scale = ε, or its ℓ∞ when larger)."""
    scale = max(float(eps), float(np.abs(delta).max()), 1e-12)
    return (np.clip(delta.transpose(1, 2, 0) / scale * 127.5 + 127.5, 0, 255) + 0.5).astype(np.uint8)


def stem_for(combo_id: int, attack: str, eps: float, tau: float, image_id: str) -> str:
    """A file name stem from a row key (image ids may hold slashes)."""
    safe = re.sub(r"[^A-Za-z0-9._-]+", "_", image_id)
    return f"c{combo_id}-{attack}-e{eps:g}-t{tau:g}-{safe}"


def _save_png(picture: np.ndarray, path: Path) -> None:
    Image.fromarray(picture).save(path, format="PNG")


def save_example(
    folder: Path,
    stem: str,
    clean: Tensor,
    adv: Tensor,
    eps: float,
    attack: str,
    clean_logits: Tensor,
    adv_logits: Tensor,
    omega: Tensor,
    psi: Tensor,
    names: Sequence[str],
) -> Path:
    """Write one example (see the module docstring); returns the ``.npz`` path."""
    folder.mkdir(parents=True, exist_ok=True)
    delta = (adv.detach().float() - clean.detach().float()).cpu().numpy()
    pictures = {"clean": to_uint8(clean), "adv": to_uint8(adv), "delta": delta_picture(delta, eps)}
    for kind, picture in pictures.items():
        atomic_write(folder / f"{stem}-{kind}.png", partial(_save_png, picture))
    npz = folder / f"{stem}.npz"

    def write(tmp: Path) -> None:
        with open(tmp, "wb") as fh:
            np.savez_compressed(
                fh,
                clean=pictures["clean"],
                adv=pictures["adv"],
                delta=delta.astype(np.float32),
                adv_float=adv.detach().float().cpu().numpy(),
                clean_logits=clean_logits.detach().float().cpu().numpy(),
                adv_logits=adv_logits.detach().float().cpu().numpy(),
                omega=omega.cpu().numpy(),
                psi=psi.cpu().numpy(),
                names=np.array(list(names)),
                eps=np.float64(eps),
                attack=np.array(attack),
            )

    atomic_write(npz, write)
    return npz


@dataclass(frozen=True)
class Example:
    """A saved example read back (``names`` of the model's outputs; masks as bool arrays)."""

    path: Path
    attack: str
    eps: float
    clean_on: np.ndarray
    adv_on: np.ndarray
    omega: np.ndarray
    psi: np.ndarray
    names: list[str]

    def png(self, kind: str) -> Path:
        return self.path.with_name(f"{self.path.stem}-{kind}.png")

    def labels(self, on: np.ndarray) -> list[str]:
        return [self.names[i] for i in np.flatnonzero(on)]


def load_example(path: Path) -> Example:
    with np.load(path, allow_pickle=False) as z:
        return Example(
            path,
            str(z["attack"]),
            float(z["eps"]),
            z["clean_logits"] > 0,
            z["adv_logits"] > 0,
            z["omega"].astype(bool),
            z["psi"].astype(bool),
            [str(n) for n in z["names"]],
        )
