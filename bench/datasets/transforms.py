"""The paper's image transform: ``Resize(s) → CenterCrop(s) → ToTensor``.

Pixels stay in [0, 1] with no mean/std normalisation at the attack's input (the official
code's ``Datasets/Dataset.py`` has its ``Normalize`` lines commented out); a model that
needs normalisation carries it inside. ``Resize(s)`` scales the shorter side to ``s``
(bilinear, antialiased), then the centre ``s × s`` square is kept.
"""

from __future__ import annotations

import torch
from PIL import Image
from torchvision import transforms

from bench.errors import InvalidValue


def check_size(image_size: int) -> int:
    if not isinstance(image_size, int) or image_size < 8:
        raise InvalidValue("image_size", image_size, "must be an integer of at least 8 pixels")
    return image_size


def paper_transform(image_size: int) -> transforms.Compose:
    """``Resize(s) → CenterCrop(s) → ToTensor`` for PIL images: ``[3, s, s]`` float in [0, 1]."""
    s = check_size(image_size)
    return transforms.Compose([transforms.Resize(s), transforms.CenterCrop(s), transforms.ToTensor()])


def load_rgb(path) -> Image.Image:
    """Decode an image file fully as RGB (raises ``OSError`` / ``ValueError`` when it does not decode)."""
    with Image.open(path) as im:
        im.load()
        return im.convert("RGB")


def uint8_to_tensor(array) -> torch.Tensor:
    """An ``[H, W, 3]`` uint8 array → ``[3, H, W]`` float tensor in [0, 1] (``ToTensor`` on arrays)."""
    return torch.from_numpy(array.copy()).permute(2, 0, 1).float().div_(255.0)
