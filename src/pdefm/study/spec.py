"""Study spec: YAML -> datasets, pre-training stages and a downstream grid, expanded
deterministically into runs with ids that are hashes of their resolved configs.

    name: demo
    resolution: 32                 # defaults for every dataset
    sigma: 0.0625                  # Gaussian source width (default 1/32)
    datasets:
      poisson_1-5:  {family: poisson, range: [1, 5], n_train: 1024, n_val: 64, n_test: 64}
      poisson_5-10: {family: poisson, range: [5, 10], n_train: 512, n_val: 64, n_test: 128}
      # a mixture of datasets above (weights), on the union channel layout; masks: optional
      # mix: {mixture: {poisson_1-5: 1, hh_1-10: 1}, n_train: 1024, n_val: 64, n_test: 64}
    pretrain:
      poisson_1-5: {data: poisson_1-5, model: fno-tiny, epochs: 30, lrs: [1e-3]}
    downstream:                    # one block, or a list of blocks
      tasks: [poisson_5-10]
      sizes: [8, 16, 32, 64]
      inits: [scratch, poisson_1-5] # scratch, or pre-training stage names
      modes: [full]                 # for pre-trained inits (scratch always trains fully)
      models: [fno-tiny]            # presets trained from scratch (fine-tuning keeps the stage's)
      lrs: [1e-3, 3e-3]
      seeds: [0]
      steps: 300                    # or epochs: N
      zero_shot: true               # also evaluate every pre-trained init on every task
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path

from pdefm.data.mixture import MixtureSpec
from pdefm.data.spec import GenerationSpec
from pdefm.errors import PdefmError
from pdefm.pdes import FAMILIES, GaussianLatticeSource
from pdefm.study.yamlcheck import Checker, Located, load_located
from pdefm.train.config import MODES, RunConfig

TOP_KEYS = {"name", "resolution", "seed", "sigma", "datasets", "pretrain", "downstream"}
MIX_KEYS = {"mixture", "n_train", "n_val", "n_test", "masks", "seed"}
DATA_KEYS = {
    "family",
    "range",
    "n_train",
    "n_val",
    "n_test",
    "resolution",
    "seed",
    "sigma",
    "max_abs_u",
    "drop_unsampleable",
}
STAGE_KEYS = {"data", "model", "epochs", "steps", "lrs", "batch_size", "weight_decay", "seed"}
GRID_KEYS = {
    "tasks",
    "sizes",
    "inits",
    "modes",
    "models",
    "lrs",
    "seeds",
    "epochs",
    "steps",
    "batch_size",
    "weight_decay",
    "lora_rank",
    "zero_shot",
}


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


def load_study(path: str | Path) -> Study:
    """Parse, check and expand a study file (PdefmError with FILE:LINE on any mistake)."""
    path = Path(path)
    root = load_located(path)
    check = Checker(path)
    top = check.mapping(root, "the study", TOP_KEYS, required=("datasets",))
    defaults = {k: top[k].value for k in ("resolution", "seed", "sigma") if k in top}
    datasets = _datasets(check, top["datasets"], defaults)
    data_runs = {}
    for name, (spec, _) in datasets.items():  # members come first (checked in _mixture)
        data_runs[name] = _data_run(name, spec, data_runs)
    stages = _stages(check, top.get("pretrain"), datasets, data_runs)
    runs = [*data_runs.values(), *stages.values()]
    for block in check.listing(top["downstream"], "downstream") if "downstream" in top else []:
        runs += _downstream(check, block, datasets, data_runs, stages)
    name = str(top["name"].value) if "name" in top else path.stem
    return Study(name, path, datasets, _unique(runs))


# -- datasets ----------------------------------------------------------------------------------
def _datasets(check: Checker, item: Located, defaults: dict) -> dict:
    out = {}
    for name, entry in check.mapping(item, "datasets", set(item.value or {})).items():
        if isinstance(entry.value, dict) and "mixture" in entry.value:
            out[name] = (_mixture(check, name, entry, out, defaults), False)
            continue
        fields = check.mapping(
            entry,
            f"datasets.{name}",
            DATA_KEYS,
            required=("family", "range", "n_train", "n_val", "n_test"),
        )
        out[name] = _generation_spec(check, name, entry, fields, defaults)
    return out


def _generation_spec(check, name, entry, fields, defaults) -> tuple[GenerationSpec, bool]:
    get = lambda k: fields[k].value if k in fields else defaults.get(k)  # noqa: E731
    family = fields["family"]
    if family.value not in FAMILIES:
        check.fail(
            family, f"unknown PDE family {family.value!r}; choose one of {', '.join(FAMILIES)}"
        )
    rng = fields["range"]
    if not (isinstance(rng.value, list) and len(rng.value) == 2):
        check.fail(rng, f"datasets.{name}.range must be [LOW, HIGH]")
    config = {"max_abs_u": float(get("max_abs_u"))} if "max_abs_u" in fields else {}
    sigma = get("sigma")
    source = GaussianLatticeSource() if sigma is None else GaussianLatticeSource(sigma=float(sigma))
    try:
        spec = GenerationSpec(
            family.value,
            float(rng.value[0].value),
            float(rng.value[1].value),
            int(fields["n_train"].value),
            int(fields["n_val"].value),
            int(fields["n_test"].value),
            resolution=int(get("resolution") or 128),
            seed=int(get("seed") or 0),
            family_config=config,
            source=source,
        )
        spec.validate()
    except (PdefmError, ValueError, TypeError) as exc:
        check.fail(entry, f"datasets.{name}: {exc}")
    return spec, bool(get("drop_unsampleable"))


def _mixture(check: Checker, name: str, entry: Located, earlier: dict, defaults) -> StudyMixture:
    where = f"datasets.{name}"
    required = ("mixture", "n_train", "n_val", "n_test")
    fields = check.mapping(entry, where, MIX_KEYS, required=required)
    members = []
    listed = fields["mixture"].value
    names = set(listed) if isinstance(listed, dict) else set()
    for member, weight in check.mapping(fields["mixture"], f"{where}.mixture", names).items():
        if member not in earlier or isinstance(earlier[member][0], StudyMixture):
            check.fail(
                weight,
                f"{where}.mixture: {member!r} is not a generated dataset listed above it "
                f"(datasets so far: {', '.join(earlier) or 'none'})",
            )
        if not isinstance(weight.value, (int, float)) or weight.value <= 0:
            check.fail(weight, f"{where}.mixture.{member}: the weight must be a positive number")
        members.append((member, float(weight.value)))
    if len(members) < 2:
        check.fail(fields["mixture"], f"{where}.mixture needs at least two datasets")
    counts = {}
    for key in ("n_train", "n_val", "n_test"):
        if not isinstance(fields[key].value, int) or fields[key].value <= 0:
            check.fail(fields[key], f"{where}.{key} must be a positive integer")
        counts[key] = fields[key].value
    masks = bool(fields["masks"].value) if "masks" in fields else False
    seed = int(fields["seed"].value) if "seed" in fields else int(defaults.get("seed") or 0)
    return StudyMixture(tuple(members), **counts, masks=masks, seed=seed)


def _data_run(name: str, spec, data_runs: dict[str, StudyRun]) -> StudyRun:
    labels = {"name": name, "family": spec.family}
    if isinstance(spec, StudyMixture):
        depends = tuple(data_runs[m].id for m, _ in spec.members)
        run_id = _hash(["mix", spec.to_dict(), depends])
        return StudyRun(run_id, "data", labels, depends)
    run_id = _hash(["data", spec.to_dict()])
    return StudyRun(run_id, "data", labels, data=spec)


# -- pre-training stages -------------------------------------------------------------------------
def _stages(check, item: Located | None, datasets, data_runs) -> dict[str, StudyRun]:
    if item is None:
        return {}
    stages = {}
    for name, entry in check.mapping(item, "pretrain", set(item.value or {})).items():
        fields = check.mapping(entry, f"pretrain.{name}", STAGE_KEYS, required=("data", "model"))
        data = _dataset_ref(check, fields["data"], datasets, f"pretrain.{name}.data")
        _check_preset(check, fields["model"])
        config = {
            "data": f"data/{data}",
            "model": fields["model"].value,
            "init": "scratch",
            "mode": "full",
            **_budget(check, fields, entry, f"pretrain.{name}"),
        }
        for key in ("batch_size", "weight_decay", "seed"):
            if key in fields:
                config[key] = fields[key].value
        config["lrs"] = _floats(check, fields.get("lrs"), [1e-3])
        spec, _ = datasets[data]
        labels = {
            "stage": name,
            "task": data,
            "family": spec.family,
            "model": config["model"],
            "low": spec.low,
            "high": spec.high,
        }
        run_id = _hash(["pretrain", config, data_runs[data].id])
        stages[name] = StudyRun(run_id, "pretrain", labels, (data_runs[data].id,), config=config)
    return stages


# -- downstream grid ----------------------------------------------------------------------------
def _downstream(check, block: Located, datasets, data_runs, stages) -> list[StudyRun]:
    g = check.mapping(block, "downstream", GRID_KEYS, required=("tasks", "sizes", "inits"))
    tasks = [
        _dataset_ref(check, t, datasets, "downstream.tasks")
        for t in check.listing(g["tasks"], "downstream.tasks")
    ]
    inits = [_init_ref(check, i, stages) for i in check.listing(g["inits"], "downstream.inits")]
    modes = [m.value for m in check.listing(g["modes"], "modes")] if "modes" in g else ["full"]
    for m in check.listing(g["modes"], "modes") if "modes" in g else []:
        if m.value not in MODES or m.value == "zero-shot":
            check.fail(
                m, f"unknown mode {m.value!r}; choose from full, head, frozen-spectral, lora"
            )
    models = [m for m in check.listing(g["models"], "models")] if "models" in g else []
    for m in models:
        _check_preset(check, m)
    common = _budget(check, g, block, "downstream")
    for key in ("batch_size", "weight_decay", "lora_rank"):
        if key in g:
            common[key] = g[key].value
    common["lrs"] = _floats(check, g.get("lrs"), [1e-3])
    seeds = [int(s.value) for s in check.listing(g["seeds"], "seeds")] if "seeds" in g else [0]
    sizes = [int(s.value) for s in check.listing(g["sizes"], "downstream.sizes")]
    largest = min(datasets[t][0].n_train for t in tasks)
    for s, item in zip(sizes, check.listing(g["sizes"], "downstream.sizes"), strict=True):
        if not 0 < s <= largest:
            check.fail(item, f"size {s} is outside 1..{largest} (the tasks' n_train)")
    runs = []
    for task in tasks:
        for init in inits:
            runs += _task_runs(
                task,
                init,
                modes,
                [m.value for m in models],
                sizes,
                seeds,
                common,
                datasets,
                data_runs,
                stages,
            )
        if g.get("zero_shot") and g["zero_shot"].value:
            runs += [
                _zero_shot(task, stage, datasets, data_runs, stages)
                for stage in inits
                if stage != "scratch"
            ]
    return runs


def _task_runs(task, init, modes, models, sizes, seeds, common, datasets, data_runs, stages):
    runs = []
    for n in sizes:
        for seed in seeds:
            if init == "scratch":
                for model in models:
                    runs.append(
                        _down_run(
                            task,
                            "scratch",
                            "full",
                            model,
                            n,
                            seed,
                            common,
                            datasets,
                            data_runs,
                            stages,
                        )
                    )
            else:
                for mode in modes:
                    model = stages[init].config["model"]
                    runs.append(
                        _down_run(
                            task, init, mode, model, n, seed, common, datasets, data_runs, stages
                        )
                    )
    return runs


def _down_run(task, init, mode, model, n, seed, common, datasets, data_runs, stages):
    spec = datasets[task][0]
    config = {
        "data": f"data/{task}",
        "model": model,
        "mode": mode,
        "n_train": n,
        "seed": seed,
        "subset_seed": seed,
        **common,
    }
    depends = [data_runs[task].id]
    config["init"] = "scratch"
    if init != "scratch":
        config["init"] = f"runs/{stages[init].id}/checkpoint"
        depends.append(stages[init].id)
    labels = {
        "task": task,
        "family": spec.family,
        "task_low": spec.low,
        "task_high": spec.high,
        "method": "scratch" if init == "scratch" else "finetune",
        "init": init,
        "init_family": "none" if init == "scratch" else stages[init].labels["family"],
        "mode": mode,
        "model": model,
        "seed": seed,
        "n_train": n,
    }
    run_id = _hash(["downstream", config, depends])
    return StudyRun(run_id, "downstream", labels, tuple(depends), config=config)


def _zero_shot(task, stage, datasets, data_runs, stages) -> StudyRun:
    spec = datasets[task][0]
    config = {
        "data": f"data/{task}",
        "init": f"runs/{stages[stage].id}/checkpoint",
        "mode": "zero-shot",
        "epochs": None,
        "model": stages[stage].config["model"],
    }
    depends = (data_runs[task].id, stages[stage].id)
    labels = {
        "task": task,
        "family": spec.family,
        "task_low": spec.low,
        "task_high": spec.high,
        "method": "zero-shot",
        "init": stage,
        "init_family": stages[stage].labels["family"],
        "mode": "zero-shot",
        "model": config["model"],
        "seed": 0,
        "n_train": 0,
    }
    return StudyRun(
        _hash(["zero-shot", config, depends]), "downstream", labels, depends, config=config
    )


# -- small checks ---------------------------------------------------------------------------------
def _budget(check, fields: dict, where_item: Located, where: str) -> dict:
    if ("epochs" in fields) == ("steps" in fields):
        check.fail(where_item, f"{where} needs exactly one of epochs or steps")
    key = "epochs" if "epochs" in fields else "steps"
    value = fields[key].value
    if not isinstance(value, int) or value <= 0:
        check.fail(fields[key], f"{where}.{key} must be a positive integer")
    return {"epochs": value, "steps": None} if key == "epochs" else {"epochs": None, "steps": value}


def _floats(check, item: Located | None, default: list[float]) -> list[float]:
    if item is None:
        return default
    out = []
    for v in check.listing(item, "lrs"):
        try:
            out.append(float(v.value))  # YAML 1.1 reads 1e-3 as a string
        except (TypeError, ValueError):
            check.fail(v, f"learning rate {v.value!r} is not a number")
    return out


def _dataset_ref(check, item: Located, datasets: dict, where: str) -> str:
    if item.value not in datasets:
        check.fail(
            item, f"{where}: no dataset named {item.value!r} (datasets: {', '.join(datasets)})"
        )
    return item.value


def _init_ref(check, item: Located, stages: dict) -> str:
    if item.value != "scratch" and item.value not in stages:
        check.fail(
            item,
            f"init {item.value!r} is neither scratch nor a pre-training stage "
            f"({', '.join(stages) or 'none defined'})",
        )
    return item.value


def _check_preset(check, item: Located) -> None:
    from pdefm.models import list_models

    if item.value not in list_models():
        check.fail(
            item, f"unknown model preset {item.value!r}; choose one of {', '.join(list_models())}"
        )


def _unique(runs: list[StudyRun]) -> list[StudyRun]:
    seen, out = set(), []
    for run in runs:
        if run.id not in seen:
            seen.add(run.id)
            out.append(run)
    return out


def _hash(obj) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:16]


def run_config(run: StudyRun, study_dir: Path, progress: bool = False) -> RunConfig:
    """The RunConfig of a training / evaluation run, paths resolved inside ``study_dir``."""
    c = dict(run.config)
    c["data"] = str(study_dir / c["data"])
    if c.get("init", "scratch") != "scratch":
        c["init"] = str(study_dir / c["init"])
    c["lrs"] = tuple(c.get("lrs", (1e-3,)))
    return RunConfig(**c, out=str(study_dir / "runs"), run_name=run.id, progress=progress)
