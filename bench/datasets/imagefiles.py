"""What the folder datasets (VOC, NUS-WIDE, Open Images) share: the data root, required
files, and a split of image files whose undecodable images are skipped and counted
instead of stopping a run."""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from pathlib import Path

import torch
from PIL import Image
from torch.utils.data import DataLoader, Dataset

from bench.datasets.base import MultiLabelDataset
from bench.datasets.transforms import load_rgb, paper_transform
from bench.errors import BenchError
from bench.paths import data_dir
from kg.graph import LabelGraph

log = logging.getLogger("bench.datasets")

DECODE_ERRORS = (OSError, ValueError, SyntaxError, Image.DecompressionBombError)


class UndecodableImage(BenchError):
    """An image file that exists but does not decode."""

    def __init__(self, path: Path, reason: str) -> None:
        super().__init__(f"image {path} does not decode ({reason})")
        self.path = path


def dataset_root(name: str, root: str | Path | None, layout: str) -> Path:
    """The folder of a dataset: ``root`` if given, else ``$BENCH_DATA/datasets/NAME``.

    ``layout`` describes what the folder must hold; it goes into the error message.
    """
    path = Path(root).expanduser() if root is not None else data_dir() / "datasets" / name
    if not path.is_dir():
        if root is not None:
            raise BenchError(f"{name} data root {path} does not exist; expected {layout}")
        raise BenchError(
            f"{name} data root {path} does not exist; pass {{root}} or put the data there (expected {layout})",
            options=["root"],
        )
    return path


def require_files(base: Path, relpaths: Sequence[str | Path], what: str) -> None:
    """Raise a ``BenchError`` naming the first missing file among ``relpaths``."""
    missing = [p for p in relpaths if not (base / p).is_file()]
    if missing:
        more = f" and {len(missing) - 1} more" if len(missing) > 1 else ""
        raise BenchError(f"{what} is incomplete: {base / missing[0]} is missing{more}")


class ImageFilesDataset(MultiLabelDataset):
    """A split stored as image files under ``root``, with targets in the graph's extended order.

    Items are decoded on access with the paper's transform. An image that does not decode
    raises :class:`UndecodableImage` (a ``BenchError``); :func:`batches` skips such images,
    counts them and says so once at the end.
    """

    def __init__(
        self,
        name: str,
        split: str,
        graph: LabelGraph,
        root: Path,
        files: Sequence[Path],
        ids: Sequence[str],
        targets: torch.Tensor,
        image_size: int,
    ) -> None:
        if not files:
            raise BenchError(f"{name} split {split!r} has no images")
        self.name, self.split, self.graph, self.root, self.image_size = name, split, graph, root, image_size
        self.files, self.ids = list(files), list(ids)
        self._targets = targets
        self._transform = paper_transform(image_size)

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        path = self.files[index]
        try:
            image = load_rgb(path)
        except DECODE_ERRORS as exc:
            raise UndecodableImage(path, str(exc) or type(exc).__name__) from None
        return self._transform(image), self._targets[index]

    def image_id(self, index: int) -> str:
        return self.ids[index]

    def targets(self) -> torch.Tensor:
        return self._targets.clone()


class _Skipping(Dataset):
    def __init__(self, dataset: MultiLabelDataset) -> None:
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int):
        try:
            image, target = self.dataset[index]
        except UndecodableImage as exc:
            return None, str(exc.path), index
        return image, target, index


def _collate(items):
    good = [it for it in items if it[0] is not None]
    bad = [it[1] for it in items if it[0] is None]
    if not good:
        return None, None, None, bad
    images = torch.stack([it[0] for it in good])
    targets = torch.stack([it[1] for it in good])
    return images, targets, torch.tensor([it[2] for it in good]), bad


def batches(
    dataset: MultiLabelDataset,
    batch_size: int = 32,
    shuffle: bool = False,
    num_workers: int = 0,
    seed: int = 0,
) -> Iterator[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
    """Batches ``(images, targets, indices)`` of a split, skipping images that do not decode.

    The skipped images are counted and reported in one warning after the last batch.
    """
    generator = torch.Generator().manual_seed(seed)
    loader = DataLoader(
        _Skipping(dataset),
        batch_size=batch_size,
        shuffle=shuffle,
        num_workers=num_workers,
        collate_fn=_collate,
        generator=generator,
    )
    skipped: list[str] = []
    for images, targets, indices, bad in loader:
        skipped.extend(bad)
        if images is not None:
            yield images, targets, indices
    if skipped:
        log.warning(
            "skipped %d image(s) of %s/%s that do not decode (first: %s)",
            len(skipped),
            getattr(dataset, "name", "dataset"),
            getattr(dataset, "split", "?"),
            skipped[0],
        )
