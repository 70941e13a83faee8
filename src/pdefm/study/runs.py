"""What a study file expands into: its runs (``StudyRun``: id, kind, labels, dependencies,
config), mixture datasets and the ``Study`` itself, and each run's ``RunConfig``."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path

from pdefm.data.mixture import MixtureSpec
from pdefm.data.spec import GenerationSpec
from pdefm.train.config import DEFAULT_LRS, RunConfig

BYTES_PER_VALUE = 4  # fields are stored as float32


SAMPLE_OVERHEAD = 256  # per-sample vectors and coefficients, generously


@dataclass(frozen=True)
class StudyRun:
    """One unit of work: generate a dataset, or train / evaluate a model."""

    id: str
    kind: str  # "data" | "pretrain" | "downstream"
    labels: dict  # task, method, init, mode, model, seed, n_train, ... (for results)
    depends: tuple[str, ...] = ()
    data: GenerationSpec | None = None
    config: dict = field(default_factory=dict)  # RunConfig fields, paths relative to the study


@dataclass(frozen=True)
class StudyMixture:
    """A study dataset that mixes other datasets of the study (``pdefm.data.mixture``)."""

    members: tuple[tuple[str, float], ...]  # (dataset name, weight)
    n_train: int
    n_val: int
    n_test: int
    masks: bool = False
    seed: int = 0
    family = "mixture"
    low = None
    high = None

    def to_dict(self) -> dict:
        return {
            "family": "mixture",
            "members": dict(self.members),
            "n_train": self.n_train,
            "n_val": self.n_val,
            "n_test": self.n_test,
            "masks": self.masks,
            "seed": self.seed,
        }

    def mixture_spec(self, data_dir: Path) -> MixtureSpec:
        members = tuple((str(data_dir / name), w) for name, w in self.members)
        return MixtureSpec(members, self.n_train, self.n_val, self.n_test, self.masks, self.seed)


@dataclass
class Study:
    name: str
    path: Path
    datasets: dict[str, tuple[GenerationSpec | StudyMixture, bool]]  # name -> (spec, drop)
    runs: list[StudyRun]
    machine: dict = field(default_factory=dict)  # device / compile / tf32 for every run
    warnings: tuple[str, ...] = ()  # things worth saying that are not mistakes (budgets)

    def data_bytes(self, names: set[str] | None = None) -> int:
        """Disk the datasets ``names`` (default: all) take once generated, roughly: two
        float32 fields per sample plus its vectors."""
        total = 0
        for name, (spec, _) in self.datasets.items():
            if names is not None and name not in names:
                continue
            res = _resolution_of(spec, self.datasets)
            samples = spec.n_train + spec.n_val + spec.n_test
            total += samples * (2 * res * res * BYTES_PER_VALUE + SAMPLE_OVERHEAD)
        return total


def _resolution_of(spec, datasets: dict) -> int:
    """A mixture's grid is its members' (they share one)."""
    if isinstance(spec, StudyMixture):
        return datasets[spec.members[0][0]][0].resolution
    return spec.resolution


def unique_runs(runs: list[StudyRun]) -> list[StudyRun]:
    seen, out = set(), []
    for run in runs:
        if run.id not in seen:
            seen.add(run.id)
            out.append(run)
    return out


def short_hash(obj) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:16]


def run_config(
    run: StudyRun, study_dir: Path, progress: bool = False, machine: dict | None = None
) -> RunConfig:
    """The RunConfig of a training / evaluation run, paths resolved inside ``study_dir``
    (the spec builds them from plain names and hashes, so they cannot leave it), with the
    study's ``machine`` settings (not part of run ids)."""
    c = dict(run.config)
    c["data"] = str(study_dir / c["data"])
    if c.get("init", "scratch") != "scratch":
        c["init"] = str(study_dir / c["init"])
    c["lrs"] = tuple(c.get("lrs", DEFAULT_LRS))
    c.setdefault("protocol", 1)  # a config without a version was planned before versions
    c.update(machine or {})
    return RunConfig(**c, out=str(study_dir / "runs"), run_name=run.id, progress=progress)
