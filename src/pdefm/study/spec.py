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
      # sampled pre-training: one run per seed (P = [0, 1, 2]); downstream seed s fine-tunes
      # the model of seed P[s mod 3], zero-shot evaluates each; seeds: [0] is no seeds key
      # wide: {data: poisson_1-5, model: fno-tiny, epochs: 30, seeds: [0, 1, 2]}
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

from pathlib import Path

from pdefm.checks import check_name
from pdefm.errors import PdefmError
from pdefm.study.budgets import budget_warnings, scaled_steps
from pdefm.study.runs import Study, StudyMixture, StudyRun, run_config, short_hash, unique_runs  # noqa: F401
from pdefm.study.spec_checks import (
    DOWNSTREAM_EPOCHS,
    DOWNSTREAM_EXTEND,
    GRID_KEYS,
    MACHINE_KEYS,  # noqa: F401
    MAX_RUNS,
    MAX_SAMPLES,
    SCALAR_CHECKS,
    STAGE_KEYS,
    TOP_KEYS,
    check_budget,
    check_dataset_ref,
    check_init_ref,
    check_lr_grid,
    check_machine,
    check_mode,
    check_preset,
    check_protocol,
    check_seed,
    check_stage_seeds,
    check_steps_power,
    check_train_options,
    mapping_keys,
    too_many_runs_message,
)
from pdefm.study.spec_data import check_datasets, data_run
from pdefm.study.yamlcheck import Checker, Located, load_located
from pdefm.train.config import RunConfig
from pdefm.train.settings import GRID, STAGE, study_keys


def load_study(path: str | Path) -> Study:
    """Parse, check and expand a study file (PdefmError with FILE:LINE on any mistake)."""
    path = Path(path)
    root = load_located(path)
    check = Checker(path)
    top = check.mapping(root, "the study", TOP_KEYS, required=("datasets",))
    name = _study_name(check, top, path)
    protocol = check_protocol(check, top.get("protocol"))
    # the version enters run configs only from 2 on: configs without it are protocol 1
    versioned = {} if protocol == 1 else {"protocol": protocol}
    defaults = _defaults(check, top)
    datasets = check_datasets(check, top["datasets"], defaults)
    data_runs: dict[str, StudyRun] = {}
    for ds_name, (spec, _) in datasets.items():  # members come first (checked in _mixture)
        data_runs[ds_name] = data_run(ds_name, spec, data_runs)
    stages = _stages(check, top.get("pretrain"), datasets, data_runs, versioned)
    runs = [*data_runs.values(), *(run for stage in stages.values() for run in stage)]
    if "downstream" in top:
        blocks = check.listing(top["downstream"], "downstream")
        for i, block in enumerate(blocks):
            where = "downstream" if len(blocks) == 1 else f"downstream[{i}]"
            runs += _downstream(check, block, where, datasets, data_runs, stages, versioned)
            if len(runs) > MAX_RUNS:
                check.fail(block, too_many_runs_message(len(runs)))
    machine = check_machine(check, top.get("machine"))
    runs = unique_runs(runs)
    return Study(name, path, datasets, runs, machine, budget_warnings(runs))


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
        SCALAR_CHECKS[key](check, item, key)
    return defaults


def _stages(
    check, item: Located | None, datasets, data_runs, versioned: dict
) -> dict[str, list[StudyRun]]:
    """Stage name -> its pre-training runs, one per seed in the order given (``P``)."""
    if item is None:
        return {}
    entries = check.mapping(item, "pretrain", mapping_keys(item))
    if not entries:
        check.fail(item, "pretrain is empty; declare a stage or remove the key")
    stages = {}
    for name, entry in entries.items():
        check.name(Located(name, entry.line), "the stage name")
        if name == "scratch":
            check.fail(entry, "a stage cannot be named scratch (inits use it for no pre-training)")
        stages[name] = _stage_runs(check, name, entry, datasets, data_runs, versioned)
    count = sum(len(runs) for runs in stages.values())
    if count > MAX_RUNS:
        check.fail(item, too_many_runs_message(count))
    return stages


def _stage_runs(
    check, name: str, entry: Located, datasets, data_runs, versioned: dict
) -> list[StudyRun]:
    """The runs of one stage: one per seed of ``seeds``, or one (seed 0, or the ``seed``
    setting) without the key."""
    where = f"pretrain.{name}"
    fields = check.mapping(entry, where, STAGE_KEYS, required=("data", "model"))
    seeds = check_stage_seeds(check, fields, where)  # before the settings: seed vs seeds
    data = check_dataset_ref(check, fields["data"], datasets, f"{where}.data")
    config = {
        "data": f"data/{data}",
        "model": check_preset(check, fields["model"], f"{where}.model"),
        "init": "scratch",
        "mode": "full",
        **check_budget(check, fields, entry, where),
        **versioned,
    }
    config.update(check_train_options(check, fields, where, study_keys(RunConfig, STAGE)))
    config.update(check_lr_grid(check, fields, where, default_extend=0))
    spec, _ = datasets[data]
    labels = {
        "stage": name,
        "task": data,
        "family": spec.family,
        "model": config["model"],
        "low": spec.low,
        "high": spec.high,
    }
    configs = [config] if seeds is None else [_seeded(config, s) for s in seeds]
    runs = []
    for c in configs:
        run_id = short_hash(["pretrain", c, data_runs[data].id])
        seeded = {**labels, "seed": c.get("seed", 0)}
        runs.append(StudyRun(run_id, "pretrain", seeded, (data_runs[data].id,), config=c))
    return runs


def _seeded(config: dict, seed: int) -> dict:
    """The stage config of one pre-training seed. Seed 0 leaves the config as it is (0 is
    RunConfig's default), so ``seeds: [0]`` and no ``seeds`` give the same run id."""
    return dict(config) if seed == 0 else {**config, "seed": seed}


def stage_run(stage: list[StudyRun], seed: int) -> StudyRun:
    """The pre-training run a downstream run of ``seed`` starts from: P[seed mod len(P)]."""
    return stage[seed % len(stage)]


def _downstream(
    check, block: Located, where: str, datasets, data_runs, stages, versioned: dict
) -> list[StudyRun]:
    g = check.mapping(block, where, GRID_KEYS, required=("tasks", "sizes", "inits"))
    listing = lambda key: check.listing(g[key], f"{where}.{key}", unique=True)  # noqa: E731
    tasks = [check_dataset_ref(check, t, datasets, f"{where}.tasks") for t in listing("tasks")]
    inits = [check_init_ref(check, i, stages, f"{where}.inits") for i in listing("inits")]
    modes = (
        [check_mode(check, m, f"{where}.modes") for m in listing("modes")] if "modes" in g else []
    )
    models = (
        [check_preset(check, m, f"{where}.models") for m in listing("models")]
        if "models" in g
        else []
    )
    if "scratch" in inits and not models:
        check.fail(
            g["inits"],
            f"{where}.inits has scratch but {where} lists no models to train from scratch; "
            "add models: [fno-tiny] (say) or remove scratch",
        )
    common = {**check_budget(check, g, block, where, DOWNSTREAM_EPOCHS), **versioned}
    power = check_steps_power(check, g, where)
    common.update(check_train_options(check, g, where, study_keys(RunConfig, GRID)))
    common.update(check_lr_grid(check, g, where, default_extend=DOWNSTREAM_EXTEND))
    seeds = (
        [check_seed(check, s, f"{where}.seeds") for s in listing("seeds")] if "seeds" in g else [0]
    )
    sizes = [check.integer(s, f"{where}.sizes", 1, MAX_SAMPLES) for s in listing("sizes")]
    largest = min(datasets[t][0].n_train for t in tasks)
    for s, item in zip(sizes, listing("sizes"), strict=True):
        if s > largest:
            check.fail(item, f"size {s} is outside 1..{largest} (the tasks' n_train)")
    zero_shot = check.boolean(g["zero_shot"], f"{where}.zero_shot") if "zero_shot" in g else False
    modes = modes or ["full"]
    per_task = sum(len(models) if i == "scratch" else len(modes) for i in inits)
    if len(tasks) * per_task * len(sizes) * len(seeds) > MAX_RUNS:
        check.fail(block, too_many_runs_message(len(tasks) * per_task * len(sizes) * len(seeds)))
    by_n = {n: scaled_steps(common, n, min(sizes), power) for n in sizes}
    runs = []
    for task in tasks:
        for init in inits:
            runs += _task_runs(
                task, init, modes, models, sizes, seeds, by_n, datasets, data_runs, stages
            )
        if zero_shot:  # one evaluation per pre-trained model of each stage
            runs += [
                _zero_shot(task, stage, datasets, data_runs)
                for init in inits
                if init != "scratch"
                for stage in stages[init]
            ]
    return runs


def _task_runs(task, init, modes, models, sizes, seeds, by_n, datasets, data_runs, stages):
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
                            by_n[n],
                            datasets,
                            data_runs,
                            stages,
                        )
                    )
            else:
                for mode in modes:
                    model = stages[init][0].config["model"]  # every seed's run: one preset
                    runs.append(
                        _down_run(
                            task, init, mode, model, n, seed, by_n[n], datasets, data_runs, stages
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
    stage = None if init == "scratch" else stage_run(stages[init], seed)
    if stage is not None:
        config["init"] = f"runs/{stage.id}/checkpoint"
        depends.append(stage.id)
    labels = {
        "task": task,
        "family": spec.family,
        "task_low": spec.low,
        "task_high": spec.high,
        "method": "scratch" if init == "scratch" else "finetune",
        "init": init,
        "init_family": "none" if stage is None else stage.labels["family"],
        "mode": mode,
        "model": model,
        "seed": seed,
        "n_train": n,
    }
    if stage is not None:  # labels are not hashed: ids stay those of one-seed stages
        labels["pretrain_seed"] = stage.labels["seed"]
    run_id = short_hash(["downstream", config, depends])
    return StudyRun(run_id, "downstream", labels, tuple(depends), config=config)


def _zero_shot(task: str, stage: StudyRun, datasets, data_runs) -> StudyRun:
    """The zero-shot evaluation of one pre-training run on ``task``: seed and pretrain_seed
    are that run's seed."""
    spec = datasets[task][0]
    config = {
        "data": f"data/{task}",
        "init": f"runs/{stage.id}/checkpoint",
        "mode": "zero-shot",
        "epochs": None,
        "model": stage.config["model"],
    }
    depends = (data_runs[task].id, stage.id)
    labels = {
        "task": task,
        "family": spec.family,
        "task_low": spec.low,
        "task_high": spec.high,
        "method": "zero-shot",
        "init": stage.labels["stage"],
        "init_family": stage.labels["family"],
        "mode": "zero-shot",
        "model": config["model"],
        "seed": stage.labels["seed"],
        "n_train": 0,
        "pretrain_seed": stage.labels["seed"],
    }
    return StudyRun(
        short_hash(["zero-shot", config, depends]), "downstream", labels, depends, config=config
    )
