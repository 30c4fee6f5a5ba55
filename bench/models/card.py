"""The model card: what a trained model is, what it was trained on and how well it does.

Written as ``card.json`` beside ``model.pt`` (which embeds the same card), read by
``bench models``, ``bench eval`` and the sweep (which checks the graph hash before attacking).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench.errors import BenchError
from bench.fileio import read_json, write_json

FORMAT = "semattack-bench/model-card"


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


@dataclass
class ModelCard:
    """Attributes:
    model, model_kwargs: registered model name and the options that rebuild it.
    dataset, labels, n_labels: dataset name, extended label order (graph nodes), own labels count.
    graph, graph_sha256: the label graph the labels come from and its content hash.
    image_size, epochs, seed, loss: the training recipe's essentials (``recipe`` holds the rest).
    test_map: mAP over the extended labels on the test split.
    consistency_share: share of test images whose clean prediction is globally consistent with
        the graph (the images attacks may use).
    throughput: training images per second; ``history``: per-epoch mean training loss.
    """

    model: str
    model_kwargs: dict[str, Any]
    dataset: str
    labels: list[str]
    n_labels: int
    graph: str
    graph_sha256: str
    image_size: int
    epochs: int = 0
    seed: int = 0
    loss: str = ""
    test_map: float | None = None
    consistency_share: float | None = None
    throughput: float | None = None
    history: list[float] = field(default_factory=list)
    recipe: dict[str, Any] = field(default_factory=dict)
    run_name: str = ""
    created: str = field(default_factory=now_iso)
    code_version: str = ""

    def __post_init__(self) -> None:
        if not self.code_version:
            from bench.version import __version__

            self.code_version = __version__

    @property
    def num_classes(self) -> int:
        return len(self.labels)

    def to_dict(self) -> dict[str, Any]:
        return {"format": FORMAT, **asdict(self)}

    @classmethod
    def from_dict(cls, data: dict[str, Any], where: str = "model card") -> ModelCard:
        if not isinstance(data, dict) or data.get("format") != FORMAT:
            raise BenchError(f"{where} is not a {FORMAT} record")
        known = {f.name for f in fields(cls)}
        try:
            return cls(**{k: v for k, v in data.items() if k in known})
        except TypeError as exc:
            raise BenchError(f"{where} does not parse: {exc}") from None

    def save(self, path: str | Path) -> Path:
        return write_json(path, self.to_dict())

    @classmethod
    def load(cls, path: str | Path) -> ModelCard:
        path = Path(path)
        data = read_json(path, "model card")
        return cls.from_dict(data, where=f"model card {path}")
