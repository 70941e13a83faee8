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
      lrs: [1e-3, 3e-3]             # or auto: 1e-3 and 3e-3, grown past an edge 3 times
      lr_extend: 2                  # default: a best rate at the grid's edge adds the next
      seeds: [0]                    #   one past it (1e-3 -> 3e-4, 3e-3 -> 1e-2), twice at most
      epochs: 200                   # per run: ceil(N / batch) steps an epoch, full batch at
                                    #   N <= 64; or steps: S (flat); or epochs: CAP with
      # patience: P                 #   stop once validation has not improved for P epochs
      # loss: rel_l2                #   training loss: mse (default) or rel_l2 (scale-free)
      zero_shot: true               # also evaluate every pre-trained init on every task

Every field is checked before anything is written: numbers for type (``true`` is not a
number, ``8.0`` is not a count), sign, finiteness and range; lists for being non-empty and
free of repeats; names of the study, datasets and stages for being plain names (they become
folders, so none can lead outside the study directory); references to datasets, stages and
model presets for existing. A mistake is ``FILE:LINE: message``.
"""

from __future__ import annotations

import difflib
import hashlib
import json
import re
from dataclasses import dataclass, field
from pathlib import Path

from pdefm import catalogue
from pdefm.checks import check_name
from pdefm.data.mixture import MixtureSpec, member_quotas
from pdefm.data.spec import GenerationSpec
from pdefm.errors import PdefmError
from pdefm.pdes import GaussianLatticeSource
from pdefm.study.yamlcheck import Checker, Located, load_located
from pdefm.train.config import DEFAULT_LRS, MAX_LR_EXTEND, MODES, RunConfig
from pdefm.train.settings import GRID, MACHINE, STAGE, check_value, settings_of, study_keys

TOP_KEYS = {
    "name",
    "resolution",
    "seed",
    "sigma",
    "datasets",
    "pretrain",
    "downstream",
    "machine",
}
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
# keys with a study form of their own; the other keys are RunConfig settings that declare a
# study place (pdefm.train.settings: STAGE, GRID, MACHINE)
STAGE_KEYS = {"data", "model", "epochs", "steps", "patience", "lrs", "lr_extend"}
STAGE_KEYS |= set(study_keys(RunConfig, STAGE))
GRID_KEYS = {"tasks", "sizes", "inits", "modes", "models", "lrs", "lr_extend", "seeds"}
GRID_KEYS |= {"epochs", "steps", "patience", "zero_shot", *study_keys(RunConfig, GRID)}
MACHINE_KEYS = set(study_keys(RunConfig, MACHINE))
SPLITS = ("n_train", "n_val", "n_test")
TRAIN_MODES = tuple(m for m in MODES if m != "zero-shot")

# Upper bounds far beyond any real study: they catch a slip of the keyboard (three extra
# zeros) before it becomes a dataset that cannot fit or a run that cannot finish.
MAX_RESOLUTION = 4096
MIN_SIGMA = 2 / MAX_RESOLUTION  # finer sources need more than MAX_RESOLUTION grid points
MAX_SIGMA = 0.5  # half the unit square: wider sources are no longer localised
MAX_SAMPLES = 100_000_000  # per split of one dataset
MAX_SEED = 2**32 - 1  # numpy's seed range
MAX_EPOCHS = 1_000_000
MAX_STEPS = 100_000_000
AUTO_LRS = [1e-3, 3e-3]  # `lrs: auto` starts here and grows past an edge (AUTO_EXTEND times)
AUTO_EXTEND = 3
DOWNSTREAM_EXTEND = 2  # a downstream grid grows past its edge this often unless lr_extend says
MAX_RUNS = 100_000  # runs of one study after expansion
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


def load_study(path: str | Path) -> Study:
    """Parse, check and expand a study file (PdefmError with FILE:LINE on any mistake)."""
    path = Path(path)
    root = load_located(path)
    check = Checker(path)
    top = check.mapping(root, "the study", TOP_KEYS, required=("datasets",))
    name = _study_name(check, top, path)
    defaults = _defaults(check, top)
    datasets = _datasets(check, top["datasets"], defaults)
    data_runs: dict[str, StudyRun] = {}
    for ds_name, (spec, _) in datasets.items():  # members come first (checked in _mixture)
        data_runs[ds_name] = _data_run(ds_name, spec, data_runs)
    stages = _stages(check, top.get("pretrain"), datasets, data_runs)
    runs = [*data_runs.values(), *stages.values()]
    if "downstream" in top:
        blocks = check.listing(top["downstream"], "downstream")
        for i, block in enumerate(blocks):
            where = "downstream" if len(blocks) == 1 else f"downstream[{i}]"
            runs += _downstream(check, block, where, datasets, data_runs, stages)
            if len(runs) > MAX_RUNS:
                check.fail(block, _too_many_runs(len(runs)))
    return Study(name, path, datasets, _unique(runs), _machine(check, top.get("machine")))


def _study_name(check: Checker, top: dict, path: Path) -> str:
    """The ``name`` key, else the file's stem; either names the default study folder."""
    if "name" in top:
        item = top["name"]
        if isinstance(item.value, int) and not isinstance(item.value, bool):
            item = Located(str(item.value), item.line)  # name: 2024 is a fine name
        return check.name(item, "the study name")
    try:
        return check_name(path.stem, "the study name (the file name without .yaml)")
    except PdefmError as exc:
        raise PdefmError(f"{path}: {exc}; or add name: NAME to the file") from None


def _defaults(check: Checker, top: dict) -> dict[str, Located]:
    """The top-level resolution / seed / sigma, checked even if every dataset overrides them."""
    defaults = {k: top[k] for k in ("resolution", "seed", "sigma") if k in top}
    for key, item in defaults.items():
        _SCALAR_CHECKS[key](check, item, key)
    return defaults


def _names(item: Located) -> set[str]:
    """The keys of a mapping item (none for anything else; ``mapping`` then says what is
    wrong)."""
    return set(item.value) if isinstance(item.value, dict) else set()


def _too_many_runs(n: int) -> str:
    return (
        f"the study expands to {n:,} or more runs (at most {MAX_RUNS:,}); shorten the lists of "
        "sizes, seeds, lrs, models or tasks, or split it into several studies"
    )


# -- numbers shared by several sections ----------------------------------------------------------
def _resolution(check: Checker, item: Located, where: str) -> int:
    value = check.integer(item, where, 4, MAX_RESOLUTION)
    if value % 2:
        check.fail(item, f"{where} must be even (the spectral solvers need it), got {value}")
    return value


def _seed(check: Checker, item: Located, where: str) -> int:
    return check.integer(item, where, 0, MAX_SEED)


def _sigma(check: Checker, item: Located, where: str) -> float:
    return check.number(item, where, minimum=MIN_SIGMA, maximum=MAX_SIGMA)


_SCALAR_CHECKS = {"resolution": _resolution, "seed": _seed, "sigma": _sigma}


# -- datasets ----------------------------------------------------------------------------------
def _datasets(check: Checker, item: Located, defaults: dict[str, Located]) -> dict:
    entries = check.mapping(item, "datasets", _names(item))
    if not entries:
        check.fail(item, "datasets is empty; declare at least one dataset")
    out: dict = {}
    folded: dict[str, str] = {}
    for name, entry in entries.items():
        check.name(Located(name, entry.line), "the dataset name")
        if name.lower() in folded:  # data/NAME folders clash on macOS and Windows
            check.fail(
                entry,
                f"datasets {folded[name.lower()]!r} and {name!r} differ only in case and "
                "would share one folder on some systems; rename one",
            )
        folded[name.lower()] = name
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
    where = f"datasets.{name}"
    family = _family(check, fields["family"], f"{where}.family")
    low, high = _range(check, fields["range"], f"{where}.range")
    counts = [check.integer(fields[k], f"{where}.{k}", 1, MAX_SAMPLES) for k in SPLITS]
    given = {**defaults, **{k: fields[k] for k in ("resolution", "seed", "sigma") if k in fields}}
    values = {k: _SCALAR_CHECKS[k](check, v, f"{where}.{k}") for k, v in given.items()}
    config = {}
    if "max_abs_u" in fields:
        if family != "helmholtz":
            check.fail(
                fields["max_abs_u"], f"{where}.max_abs_u applies to helmholtz only; remove it"
            )
        config["max_abs_u"] = check.number(fields["max_abs_u"], f"{where}.max_abs_u", positive=True)
    drop = False
    if "drop_unsampleable" in fields:
        drop = check.boolean(fields["drop_unsampleable"], f"{where}.drop_unsampleable")
    sigma = values.get("sigma")
    source = GaussianLatticeSource() if sigma is None else GaussianLatticeSource(sigma=sigma)
    try:
        spec = GenerationSpec(
            family,
            low,
            high,
            *counts,
            resolution=values.get("resolution", 128),
            seed=values.get("seed", 0),
            family_config=config,
            source=source,
        )
        spec.validate()
    except (PdefmError, ValueError, TypeError) as exc:
        check.fail(entry, f"{where}: {_study_words(str(exc))}")
    return spec, drop


def _study_words(message: str) -> str:
    """The generator speaks in CLI flags (--n-train, --range); a study file in keys."""
    return re.sub(r"--([a-z][a-z-]*)", lambda m: m.group(1).replace("-", "_"), message)


def _family(check: Checker, item: Located, where: str) -> str:
    names = catalogue.family_names()
    if not catalogue.is_family(item.value):
        close = difflib.get_close_matches(str(item.value), names, n=1)
        hint = f"did you mean {close[0]!r}? " if close else ""
        check.fail(
            item,
            f"unknown PDE family {item.value!r} in {where}; {hint}choose one of {', '.join(names)}",
        )
    return item.value


def _range(check: Checker, item: Located, where: str) -> tuple[float, float]:
    if not (isinstance(item.value, list) and len(item.value) == 2):
        check.fail(item, f"{where} must be [LOW, HIGH], two numbers")
    low, high = (check.number(v, where) for v in item.value)
    return low, high


def _mixture(check: Checker, name: str, entry: Located, earlier: dict, defaults) -> StudyMixture:
    where = f"datasets.{name}"
    fields = check.mapping(entry, where, MIX_KEYS, required=("mixture", *SPLITS))
    listed = fields["mixture"]
    members = []
    for member, weight in check.mapping(listed, f"{where}.mixture", _names(listed)).items():
        if member not in earlier or isinstance(earlier[member][0], StudyMixture):
            check.fail(
                weight,
                f"{where}.mixture: {member!r} is not a generated dataset listed above it "
                f"(datasets so far: {', '.join(earlier) or 'none'})",
            )
        w = check.number(weight, f"{where}.mixture.{member} (its weight)", positive=True)
        members.append((member, w))
    if len(members) < 2:
        check.fail(listed, f"{where}.mixture needs at least two datasets")
    counts = {k: check.integer(fields[k], f"{where}.{k}", 1, MAX_SAMPLES) for k in SPLITS}
    _check_members(check, listed, where, members, counts, earlier)
    masks = check.boolean(fields["masks"], f"{where}.masks") if "masks" in fields else False
    seed_item = fields.get("seed", defaults.get("seed"))  # the study-wide seed is the default
    seed = _seed(check, seed_item, f"{where}.seed") if seed_item is not None else 0
    return StudyMixture(tuple(members), **counts, masks=masks, seed=seed)


def _check_members(check, item: Located, where: str, members, counts, earlier) -> None:
    """Members share one grid and hold enough samples for their share of every split."""
    specs = {m: earlier[m][0] for m, _ in members}
    grids = {s.resolution for s in specs.values()}
    if len(grids) > 1:
        listing = ", ".join(f"{m}: {s.resolution}" for m, s in specs.items())
        check.fail(item, f"{where}.mixture members differ in resolution ({listing}); use one")
    for split, n in counts.items():
        quotas = member_quotas([w for _, w in members], n)
        for (member, _), quota in zip(members, quotas, strict=True):
            have = getattr(specs[member], split)
            if quota > have:
                check.fail(
                    item,
                    f"{where} takes {quota} {split[2:]} samples from {member!r}, which has "
                    f"{have}; lower {where}.{split} or raise {member}'s {split}",
                )


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
    entries = check.mapping(item, "pretrain", _names(item))
    if not entries:
        check.fail(item, "pretrain is empty; declare a stage or remove the key")
    stages = {}
    for name, entry in entries.items():
        where = f"pretrain.{name}"
        check.name(Located(name, entry.line), "the stage name")
        if name == "scratch":
            check.fail(entry, "a stage cannot be named scratch (inits use it for no pre-training)")
        fields = check.mapping(entry, where, STAGE_KEYS, required=("data", "model"))
        data = _dataset_ref(check, fields["data"], datasets, f"{where}.data")
        config = {
            "data": f"data/{data}",
            "model": _preset(check, fields["model"], f"{where}.model"),
            "init": "scratch",
            "mode": "full",
            **_budget(check, fields, entry, where),
        }
        config.update(_train_options(check, fields, where, study_keys(RunConfig, STAGE)))
        config.update(_lr_grid(check, fields, where, default_extend=0))
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
def _downstream(check, block: Located, where: str, datasets, data_runs, stages) -> list[StudyRun]:
    g = check.mapping(block, where, GRID_KEYS, required=("tasks", "sizes", "inits"))
    listing = lambda key: check.listing(g[key], f"{where}.{key}", unique=True)  # noqa: E731
    tasks = [_dataset_ref(check, t, datasets, f"{where}.tasks") for t in listing("tasks")]
    inits = [_init_ref(check, i, stages, f"{where}.inits") for i in listing("inits")]
    modes = [_mode(check, m, f"{where}.modes") for m in listing("modes")] if "modes" in g else []
    models = (
        [_preset(check, m, f"{where}.models") for m in listing("models")] if "models" in g else []
    )
    if "scratch" in inits and not models:
        check.fail(
            g["inits"],
            f"{where}.inits has scratch but {where} lists no models to train from scratch; "
            "add models: [fno-tiny] (say) or remove scratch",
        )
    common = _budget(check, g, block, where)
    common.update(_train_options(check, g, where, study_keys(RunConfig, GRID)))
    common.update(_lr_grid(check, g, where, default_extend=DOWNSTREAM_EXTEND))
    seeds = [_seed(check, s, f"{where}.seeds") for s in listing("seeds")] if "seeds" in g else [0]
    sizes = [check.integer(s, f"{where}.sizes", 1, MAX_SAMPLES) for s in listing("sizes")]
    largest = min(datasets[t][0].n_train for t in tasks)
    for s, item in zip(sizes, listing("sizes"), strict=True):
        if s > largest:
            check.fail(item, f"size {s} is outside 1..{largest} (the tasks' n_train)")
    zero_shot = check.boolean(g["zero_shot"], f"{where}.zero_shot") if "zero_shot" in g else False
    modes = modes or ["full"]
    per_task = sum(len(models) if i == "scratch" else len(modes) for i in inits)
    if len(tasks) * per_task * len(sizes) * len(seeds) > MAX_RUNS:
        check.fail(block, _too_many_runs(len(tasks) * per_task * len(sizes) * len(seeds)))
    runs = []
    for task in tasks:
        for init in inits:
            runs += _task_runs(
                task, init, modes, models, sizes, seeds, common, datasets, data_runs, stages
            )
        if zero_shot:
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
    """epochs: E (steps grow with N), steps: S, or epochs: CAP with patience: P."""
    if ("epochs" in fields) == ("steps" in fields):
        check.fail(where_item, f"{where} needs exactly one of epochs or steps")
    key = "epochs" if "epochs" in fields else "steps"
    limit = MAX_EPOCHS if key == "epochs" else MAX_STEPS
    value = check.integer(fields[key], f"{where}.{key}", 1, limit)
    out = {"epochs": value, "steps": None} if key == "epochs" else {"epochs": None, "steps": value}
    if "patience" in fields:
        if key != "epochs":
            check.fail(
                fields["patience"],
                f"{where}.patience stops within an epoch cap: use epochs: CAP, not steps",
            )
        out["patience"] = check.integer(fields["patience"], f"{where}.patience", 1, MAX_EPOCHS)
    return out


def _lr_grid(check, fields: dict, where: str, default_extend: int) -> dict:
    """``lrs`` (a list, or ``auto``) and ``lr_extend``: the grid and how often it may grow
    past the edge where the best rate sits."""
    item = fields.get("lrs")
    auto = item is not None and item.value == "auto"
    if item is not None and isinstance(item.value, str) and not auto:
        check.fail(
            item, f"{where}.lrs must be a list of learning rates or auto, got {item.value!r}"
        )
    lrs = list(AUTO_LRS) if auto else _lrs(check, item, f"{where}.lrs")
    extend = AUTO_EXTEND if auto else default_extend
    if "lr_extend" in fields:
        extend = check.integer(fields["lr_extend"], f"{where}.lr_extend", 0, MAX_LR_EXTEND)
    out = {"lrs": lrs}
    if extend:
        out["lr_extend"] = extend
    return out


def _train_options(check, fields: dict, where: str, keys: tuple[str, ...]) -> dict:
    """The settings among ``keys`` that ``fields`` sets, checked against their declaration
    (``RunConfig``'s schema), errors at FILE:LINE."""
    declared = settings_of(RunConfig)
    out = {}
    for key in keys:
        if key not in fields:
            continue
        item, name = fields[key], f"{where}.{key}"
        _, schema = declared[key]
        if schema.kind == "float":
            value = check.number(item, name, minimum=schema.minimum, positive=schema.positive)
            # keep the number as written (0 vs 0.0): it is part of the run id
            out[key] = item.value if isinstance(item.value, (int, float)) else value
        elif schema.kind == "choice" and item.value not in schema.choices:
            close = difflib.get_close_matches(str(item.value), schema.choices, n=1)
            hint = f"did you mean {close[0]!r}? " if close else ""
            check.fail(
                item,
                f"unknown {key} {item.value!r} in {name}; {hint}choose from "
                f"{', '.join(schema.choices)}",
            )
        else:
            out[key] = check.wrap(item, check_value, schema, name)
    return out


def _machine(check, item: Located | None) -> dict:
    """The study's ``machine`` block: settings that change where or how fast runs go, not
    what they compute (not in run ids), given to every run."""
    if item is None:
        return {}
    fields = check.mapping(item, "machine", MACHINE_KEYS)
    return _train_options(check, fields, "machine", tuple(sorted(MACHINE_KEYS)))


def _lrs(check, item: Located | None, where: str) -> list[float]:
    if item is None:
        return list(DEFAULT_LRS)
    out: list[float] = []
    for v in check.listing(item, where):
        lr = check.number(v, where, positive=True)
        if lr in out:
            check.fail(v, f"{where} lists {lr:g} twice; remove one")
        out.append(lr)
    return out


def _ref(item: Located) -> Located:
    """A reference as text: mapping keys are read as text, so `tasks: [2024]` names the
    dataset `2024:`."""
    if isinstance(item.value, int) and not isinstance(item.value, bool):
        return Located(str(item.value), item.line)
    return item


def _dataset_ref(check, item: Located, datasets: dict, where: str) -> str:
    item = _ref(item)
    if not isinstance(item.value, str) or item.value not in datasets:
        check.fail(
            item,
            f"{where}: no dataset named {item.value!r}{_did_you_mean(item.value, datasets)} "
            f"(datasets: {', '.join(datasets)})",
        )
    return item.value


def _init_ref(check, item: Located, stages: dict, where: str) -> str:
    item = _ref(item)
    if not isinstance(item.value, str) or (item.value != "scratch" and item.value not in stages):
        check.fail(
            item,
            f"{where}: init {item.value!r} is neither scratch nor a pre-training stage"
            f"{_did_you_mean(item.value, [*stages, 'scratch'])} "
            f"(stages: {', '.join(stages) or 'none defined'})",
        )
    return item.value


def _mode(check, item: Located, where: str) -> str:
    if item.value not in TRAIN_MODES:
        hint = " (zero-shot is the zero_shot: true flag)" if item.value == "zero-shot" else ""
        check.fail(
            item,
            f"unknown mode {item.value!r} in {where}; choose from {', '.join(TRAIN_MODES)}" + hint,
        )
    return item.value


def _preset(check, item: Located, where: str) -> str:
    from pdefm.models import list_models

    presets = list_models()
    if not isinstance(item.value, str) or item.value not in presets:
        check.fail(
            item,
            f"unknown model preset {item.value!r} in {where}"
            f"{_did_you_mean(item.value, presets)}; choose one of {', '.join(presets)}",
        )
    return item.value


def _did_you_mean(value: object, names) -> str:
    close = difflib.get_close_matches(str(value), list(names), n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


def _unique(runs: list[StudyRun]) -> list[StudyRun]:
    seen, out = set(), []
    for run in runs:
        if run.id not in seen:
            seen.add(run.id)
            out.append(run)
    return out


def _hash(obj) -> str:
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
    c.update(machine or {})
    return RunConfig(**c, out=str(study_dir / "runs"), run_name=run.id, progress=progress)
