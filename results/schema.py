"""The results schema: what a sweep writes (the contract) and the DuckDB tables that hold it.

A sweep codes against three dataclasses:

* ``RunConfig`` — one run's full configuration. Its ``config_hash`` covers everything that
  changes the numbers (dataset, model card, graph hash, attacks, ε, τ, |Ω|, images per
  combination, preset, iterations, seed, code version, ``extra``) and leaves out what does
  not (run name, model path, device, shard, creation time). Re-running the same
  configuration resumes the stored run; shards of one sweep share the hash.
* ``Combination`` — one target set Ω with its eligible and attacked image counts, written
  before its rows so that a combination with no eligible image is recorded, not dropped.
* ``ResultRow`` — one attacked image of one combination under one (attack, ε, τ). Its
  natural key ``(run_id, combo_id, image_id, attack, eps, tau)`` is the table's primary key,
  so writing a row twice stores it once.

Row semantics (docs/attacks.md, Metrics): ``success`` = every label of Ω predicted 0 after the attack
(FR_N numerator); ``consistent`` = successful *and* locally consistent at every target
(FR_S numerator, so it implies ``success``); ``ntr_share`` = share of non-Ψ labels that
changed (0 for failed rows, which count as unperturbed); ``ssim`` only for successful rows;
``rmsd`` only for successful ML-DP rows; ``success_iteration`` = the iteration of the image the
attack returned: its first success (Square: the queries made; ML-DP: its smallest successful
iterate), the budget N when it failed (version 6 renamed it from ``iterations``, which in ``runs``
is the budget N); ``linf``/``l2`` = perturbation norms; ``seconds`` = wall time spent on
the row. Attacks that take no τ are run once per ε and written with ``tau = config.tau[0]``.

``machines`` (schema version 3) holds, per run, the numerics fingerprint of each machine that
computed its rows (``bench.numerics``: device, CPU and code paths, library versions,
precision, B, CPU-numerics mode); ``results.machine`` names it per row, and ``accepted`` says
why a machine's rows joined a run computed elsewhere (NULL for a run's own). Rows stored
before version 3 have no machine.

``results.flipped`` (schema version 4) names the labels outside Ψ whose prediction the attack
changed: the numerator of ``ntr_share``, so empty for failed rows. The ``label_rates`` view and
``bench kg annotate`` count them per label. Rows stored before version 4 hold NULL there.

``checks`` (schema version 5) holds each run's reliability checks (``bench.sweep.checks``): one
row per check, ``pass``, ``flag`` or ``skip``, the measured value and one line saying what was
measured and, when flagged, what it means and what to do. ``transfer`` (version 5) holds the
run's adversarial images evaluated on other models (``target``), one row per result key and
target: ``source_success`` (the row's own success), ``eligible`` (the target's clean prediction
has every label of Ω positive), and success, consistent and ntr_share on the target, with Ψ
recomputed from the target's clean prediction.

``clean_stats`` (version 5) holds, per run, what the model (under its defense) does on the
clean images of the split: their number, its mAP where the dataset has ground truth, the share
of predictions consistent with the graph and the share a detector rejects (NULL without one).

``results.detected`` (version 5) says, for a run against a defended model with a detector
(``bench.defenses``), whether the detector rejected the row's adversarial image (NULL without
one): a pair is fooled after detection when it succeeds and is not detected.

``artifacts`` (schema version 2) references the adversarial examples a run saved
(``bench run --save-images N``): one ``.npz`` per row key, its path relative to the database's
folder, with PNGs beside it under the same stem.

The database keeps its schema version in ``meta``; ``MIGRATIONS[v]`` upgrades version ``v``
to ``v + 1`` and a writing store applies them in one transaction (``results.migrate``).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from datetime import UTC, datetime
from typing import Any, ClassVar, NamedTuple

from bench.errors import BenchError
from bench.version import __version__

SCHEMA_VERSION = 6

ARTIFACTS_DDL = """CREATE TABLE artifacts (
        run_id TEXT NOT NULL,
        combo_id INTEGER NOT NULL,
        image_id TEXT NOT NULL,
        attack TEXT NOT NULL,
        eps DOUBLE NOT NULL,
        tau DOUBLE NOT NULL,
        path TEXT NOT NULL,
        PRIMARY KEY (run_id, combo_id, image_id, attack, eps, tau)
    )"""

MACHINES_DDL = """CREATE TABLE machines (
        run_id TEXT NOT NULL,
        machine TEXT NOT NULL,
        fingerprint TEXT NOT NULL,
        accepted TEXT,
        first_used TIMESTAMP NOT NULL,
        PRIMARY KEY (run_id, machine)
    )"""

CHECKS_DDL = """CREATE TABLE checks (
        run_id TEXT NOT NULL,
        name TEXT NOT NULL,
        status TEXT NOT NULL CHECK (status IN ('pass', 'flag', 'skip')),
        value DOUBLE,
        detail TEXT NOT NULL,
        checked TIMESTAMP NOT NULL,
        PRIMARY KEY (run_id, name)
    )"""

TRANSFER_DDL = """CREATE TABLE transfer (
        run_id TEXT NOT NULL,
        target TEXT NOT NULL,
        combo_id INTEGER NOT NULL,
        image_id TEXT NOT NULL,
        attack TEXT NOT NULL,
        eps DOUBLE NOT NULL,
        tau DOUBLE NOT NULL,
        source_success BOOLEAN NOT NULL,
        eligible BOOLEAN NOT NULL,
        success BOOLEAN NOT NULL CHECK (eligible OR NOT success),
        consistent BOOLEAN NOT NULL CHECK (success OR NOT consistent),
        ntr_share DOUBLE NOT NULL CHECK (ntr_share BETWEEN 0 AND 1),
        PRIMARY KEY (run_id, target, combo_id, image_id, attack, eps, tau)
    )"""

CLEAN_DDL = """CREATE TABLE clean_stats (
        run_id TEXT PRIMARY KEY,
        images INTEGER NOT NULL,
        map DOUBLE,
        consistent DOUBLE NOT NULL CHECK (consistent BETWEEN 0 AND 1),
        rejected DOUBLE CHECK (rejected IS NULL OR rejected BETWEEN 0 AND 1)
    )"""

#: SQL statements that upgrade schema version ``v`` to ``v + 1``.
MIGRATIONS: dict[int, tuple[str, ...]] = {
    1: (ARTIFACTS_DDL,),  # version 2: the adversarial examples saved with `bench run --save-images`
    # version 3: the numerics fingerprint of the machine that computed each row (bench.numerics)
    2: ("ALTER TABLE results ADD COLUMN machine TEXT", MACHINES_DDL),
    # version 4: which labels outside Ψ each row's attack flipped (the label_rates view)
    3: ("ALTER TABLE results ADD COLUMN flipped TEXT[]",),
    # version 5: the reliability checks of each run, and its rows' transfer to other models
    4: (CHECKS_DDL, TRANSFER_DDL, CLEAN_DDL, "ALTER TABLE results ADD COLUMN detected BOOLEAN"),
    # version 6: results.iterations named for what it holds (runs.iterations is the budget N)
    5: ("ALTER TABLE results RENAME COLUMN iterations TO success_iteration",),
}

#: The runs table's columns in table order, with their SQL types: its DDL and ``run_values``
#: (what ``begin_run`` inserts) are built from it. A column holds the ``RunConfig`` field or
#: property of its name, except those ``run_values`` names.
RUN_COLUMNS: tuple[tuple[str, str], ...] = (
    ("run_id", "TEXT PRIMARY KEY"),
    ("config_hash", "TEXT NOT NULL"),
    ("dataset", "TEXT NOT NULL"),
    ("model_name", "TEXT NOT NULL"),
    ("model_path", "TEXT NOT NULL"),
    ("model_card", "TEXT NOT NULL"),
    ("graph_name", "TEXT NOT NULL"),
    ("graph_sha256", "TEXT NOT NULL"),
    ("attacks", "TEXT[] NOT NULL"),
    ("eps", "DOUBLE[] NOT NULL"),
    ("tau", "DOUBLE[] NOT NULL"),
    ("sizes", "INTEGER[] NOT NULL"),
    ("images_per_combination", "INTEGER NOT NULL"),
    ("preset", "TEXT NOT NULL"),
    ("iterations", "INTEGER NOT NULL"),
    ("seed", "BIGINT NOT NULL"),
    ("shard_count", "INTEGER NOT NULL"),
    ("shards", "INTEGER[] NOT NULL"),
    ("code_version", "TEXT NOT NULL"),
    ("device", "TEXT NOT NULL"),
    ("created", "TIMESTAMP NOT NULL"),
    ("finished", "TIMESTAMP"),
    ("config", "TEXT NOT NULL"),
)

DDL = (
    "CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)",
    "CREATE TABLE runs (\n" + ",\n".join(f"        {name} {sql}" for name, sql in RUN_COLUMNS) + "\n    )",
    """CREATE TABLE combinations (
        run_id TEXT NOT NULL,
        combo_id INTEGER NOT NULL,
        size INTEGER NOT NULL CHECK (size >= 1),
        labels TEXT[] NOT NULL,
        eligible INTEGER NOT NULL CHECK (eligible >= 0),
        attacked INTEGER NOT NULL CHECK (attacked >= 0 AND attacked <= eligible),
        complete BOOLEAN NOT NULL DEFAULT FALSE,
        PRIMARY KEY (run_id, combo_id)
    )""",
    """CREATE TABLE results (
        run_id TEXT NOT NULL,
        combo_id INTEGER NOT NULL,
        image_id TEXT NOT NULL,
        attack TEXT NOT NULL,
        eps DOUBLE NOT NULL CHECK (eps > 0),
        tau DOUBLE NOT NULL,
        success BOOLEAN NOT NULL,
        consistent BOOLEAN NOT NULL CHECK (success OR NOT consistent),
        ntr_share DOUBLE NOT NULL CHECK (ntr_share BETWEEN 0 AND 1),
        ssim DOUBLE CHECK (ssim IS NULL OR success),
        rmsd DOUBLE CHECK (rmsd IS NULL OR (success AND rmsd >= 0)),
        success_iteration INTEGER NOT NULL CHECK (success_iteration >= 0),
        linf DOUBLE NOT NULL CHECK (linf >= 0),
        l2 DOUBLE NOT NULL CHECK (l2 >= 0),
        seconds DOUBLE NOT NULL CHECK (seconds >= 0),
        machine TEXT,
        flipped TEXT[],
        detected BOOLEAN,
        PRIMARY KEY (run_id, combo_id, image_id, attack, eps, tau)
    )""",
    ARTIFACTS_DDL,
    MACHINES_DDL,
    CHECKS_DDL,
    TRANSFER_DDL,
    CLEAN_DDL,
)

#: Fields of ``RunConfig`` that do not change the numbers, left out of ``config_hash``.
VOLATILE = ("name", "model_path", "shard_index", "shard_count", "device", "created")


@dataclass(frozen=True)
class Protocol:
    """The sweep's protocol settings that change the numbers, typed (stored as ``RunConfig.extra``).

    ``to_extra`` writes the dict the configuration hash covers: the first seven fields always
    (``ALWAYS``), every later one only when it is not its default, so that runs stored before it
    was a field keep their ids: ``closure``, ``precision``, ``cpu_numerics``, ``data`` (a user's
    images' sha256s, ``MultiLabelDataset.fingerprint``, when the dataset gives one), ``defense``
    and ``eot`` (a defended run). A new field goes last, with the default that reproduces every
    stored run. ``from_extra`` reads any stored version back.
    """

    ALWAYS: ClassVar[tuple[str, ...]] = (
        "split",
        "combos",
        "combinations_per_size",
        "include_abstract",
        "steps",
        "images",
        "target",
    )

    split: str = "test"
    combos: str = "all"
    combinations_per_size: int | None = None
    include_abstract: bool = False
    steps: Mapping[str, int] = field(default_factory=dict)  # per attack
    images: Mapping[str, int] = field(default_factory=dict)  # per attack, where fewer than N
    target: str = "off"  # turn-off, the paper's setting
    closure: str = "bench"
    precision: str = "fp32"
    cpu_numerics: str = "native"
    data: Mapping[str, Any] | None = None  # the dataset's fingerprint, for a user's images
    defense: Mapping[str, Any] | None = None  # the defended model's defense (``Defense.config()``)
    eot: int = 1  # the attacks average this many draws of a randomised defense

    def to_extra(self) -> dict[str, Any]:
        extra: dict[str, Any] = {}
        defaults = Protocol()
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name in self.ALWAYS or value != getattr(defaults, f.name):
                extra[f.name] = dict(value) if isinstance(value, Mapping) else value
        return extra

    @classmethod
    def from_extra(cls, extra: Mapping[str, Any]) -> Protocol:
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in extra.items() if k in known})


@dataclass(frozen=True)
class RunConfig:
    """One run's configuration, stored in ``runs`` (``config`` holds it as JSON).

    ``name`` is the run id users pick runs by; left empty it is derived from the dataset,
    the model and the configuration hash, so re-running the same command resumes the run.
    ``shard_index``/``shard_count`` are the ``--shard i/n`` of this process. ``extra`` holds
    protocol settings the sweep adds (hashed); ``model_card`` is the model card as a dict.
    """

    dataset: str
    model_name: str
    graph_name: str
    graph_sha256: str
    attacks: tuple[str, ...]
    eps: tuple[float, ...]
    tau: tuple[float, ...]
    sizes: tuple[int, ...]
    images_per_combination: int
    iterations: int
    seed: int
    preset: str = ""
    model_card: Mapping[str, Any] = field(default_factory=dict)
    extra: Mapping[str, Any] = field(default_factory=dict)
    name: str = ""
    model_path: str = ""
    shard_index: int = 0
    shard_count: int = 1
    code_version: str = __version__
    device: str = ""
    created: str = ""

    def __post_init__(self) -> None:
        set_ = object.__setattr__
        set_(self, "attacks", tuple(str(a).lower() for a in self.attacks))
        set_(self, "eps", tuple(grid_value(e) for e in self.eps))
        set_(self, "tau", tuple(grid_value(t) for t in self.tau))
        set_(self, "sizes", tuple(int(s) for s in self.sizes))
        set_(self, "model_card", json.loads(_canonical(dict(self.model_card))))
        set_(self, "extra", json.loads(_canonical(dict(self.extra))))
        for name in ("attacks", "eps", "tau", "sizes"):
            if not getattr(self, name):
                raise BenchError(f"run configuration has no {name}")
        if not (self.shard_count >= 1 and 0 <= self.shard_index < self.shard_count):
            raise BenchError(f"shard {self.shard_index}/{self.shard_count} is not i/n with 0 <= i < n")

    @property
    def protocol(self) -> Protocol:
        """``extra`` as typed protocol settings."""
        return Protocol.from_extra(self.extra)

    def hashed(self) -> dict[str, Any]:
        """The fields that define the experiment (everything but ``VOLATILE``)."""
        return {k: v for k, v in self.as_dict().items() if k not in VOLATILE}

    @property
    def config_hash(self) -> str:
        return hashlib.sha256(_canonical(self.hashed()).encode()).hexdigest()

    @property
    def run_id(self) -> str:
        return self.name or f"{self.dataset}-{self.model_name}-{self.config_hash[:8]}"

    def as_dict(self) -> dict[str, Any]:
        return {f.name: _plain(getattr(self, f.name)) for f in fields(self)}

    def to_json(self) -> str:
        return _canonical(self.as_dict())

    @classmethod
    def from_json(cls, text: str) -> RunConfig:
        data = json.loads(text)
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})

    def with_created(self, created: str) -> RunConfig:
        return replace(self, created=created)

    def differences(self, other: RunConfig) -> list[str]:
        """``"field: ours != theirs"`` for each hashed field that differs."""
        a, b = self.hashed(), other.hashed()
        return [f"{k}: {_canonical(a.get(k))} != {_canonical(b.get(k))}" for k in a if a.get(k) != b.get(k)]


def run_values(config: RunConfig) -> list[Any]:
    """``config`` as a new row of ``runs``, in ``RUN_COLUMNS`` order: each column the field or
    property of its name, but the model card (JSON), the shards held (this one), ``finished``
    (not yet) and ``config`` (the whole configuration as JSON)."""
    own = {
        "model_card": json.dumps(config.model_card, sort_keys=True),
        "shards": [config.shard_index],
        "finished": None,
        "config": config.to_json(),
    }
    return [own[name] if name in own else _plain(getattr(config, name)) for name, _ in RUN_COLUMNS]


@dataclass(frozen=True)
class Combination:
    """A target set Ω of one run: ``eligible`` images qualify, the first ``attacked`` were attacked."""

    combo_id: int
    labels: tuple[str, ...]
    eligible: int
    attacked: int

    @property
    def size(self) -> int:
        return len(self.labels)


@dataclass(frozen=True, slots=True)
class ResultRow:
    """One attacked image of one combination under one (attack, ε, τ); see the module docstring."""

    combo_id: int
    image_id: str
    attack: str
    eps: float
    tau: float
    success: bool
    consistent: bool
    ntr_share: float
    success_iteration: int  # first success (Square: queries); the budget N when it failed
    linf: float
    l2: float
    seconds: float
    ssim: float | None = None
    rmsd: float | None = None
    machine: str | None = None  # the numerics fingerprint's id (``machines``); set by the writer
    flipped: tuple[str, ...] | None = None  # labels outside Ψ the attack changed (success only)
    detected: bool | None = None  # a defense's detector rejected the adversarial image (None: no detector)

    @property
    def key(self) -> ResultKey:
        return ResultKey.of(self.combo_id, self.image_id, self.attack, self.eps, self.tau)


class ResultKey(NamedTuple):
    """A row's natural key within its run (what resume skips)."""

    combo_id: int
    image_id: str
    attack: str
    eps: float
    tau: float

    @classmethod
    def of(cls, combo_id: int, image_id: str, attack: str, eps: float, tau: float) -> ResultKey:
        """The key as the store writes it (ε/τ on the ``grid_value`` grid, attack in lower case)."""
        return cls(int(combo_id), str(image_id), attack.lower(), grid_value(eps), grid_value(tau))


ROW_COLUMNS = tuple(f.name for f in fields(ResultRow))


@dataclass(frozen=True, slots=True)
class TransferRow:
    """One result row's adversarial image evaluated on another model (``target``): a row of
    ``transfer`` (``bench.sweep.transfer``)."""

    target: str
    combo_id: int
    image_id: str
    attack: str
    eps: float
    tau: float
    source_success: bool
    eligible: bool
    success: bool
    consistent: bool
    ntr_share: float

    @property
    def key(self) -> ResultKey:
        return ResultKey.of(self.combo_id, self.image_id, self.attack, self.eps, self.tau)


TRANSFER_COLUMNS = tuple(f.name for f in fields(TransferRow))


def grid_value(x: float) -> float:
    """ε and τ as stored and keyed: rounded to 7 significant digits, so a float32 ε
    (``0.009999999776``) and the configured ``0.01`` name the same row."""
    return float(f"{float(x):.7g}")


def now() -> str:
    """The time as the results tables store it (``created``, ``first_used``, ...): UTC, to the second."""
    return datetime.now(UTC).replace(tzinfo=None).isoformat(sep=" ", timespec="seconds")


def _plain(value: Any) -> Any:
    if isinstance(value, tuple):
        return list(value)
    if isinstance(value, Mapping):
        return dict(value)
    return value


def _canonical(obj: Any) -> str:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), default=_plain)


__all__ = [
    "DDL",
    "MIGRATIONS",
    "ROW_COLUMNS",
    "RUN_COLUMNS",
    "SCHEMA_VERSION",
    "VOLATILE",
    "Combination",
    "ResultKey",
    "ResultRow",
    "RunConfig",
    "TRANSFER_COLUMNS",
    "TransferRow",
    "grid_value",
    "now",
    "run_values",
]
