"""The study file's keys and the checks its sections share: numbers, learning-rate grids, budgets,
training settings (from RunConfig's schema), the machine block and references to datasets,
stages, modes and model presets; every mistake is ``FILE:LINE: message``."""

from __future__ import annotations

import difflib
import re

from pdefm import catalogue
from pdefm.study.yamlcheck import Checker, Located
from pdefm.train.config import DEFAULT_LRS, MAX_LR_EXTEND, MODES, OWN_CHECKS, PROTOCOL, RunConfig
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
    "protocol",
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
    "constants",
}


# keys with a study form of their own; the other keys are RunConfig settings that declare a
# study place (pdefm.train.settings: STAGE, GRID, MACHINE)
STAGE_KEYS = {"data", "model", "epochs", "steps", "patience", "lrs", "lr_extend", "seeds"}
STAGE_KEYS |= set(study_keys(RunConfig, STAGE))


GRID_KEYS = {"tasks", "sizes", "inits", "modes", "models", "lrs", "lr_extend", "seeds"}
GRID_KEYS |= {"epochs", "steps", "steps_power", "patience", "zero_shot"}
GRID_KEYS |= set(study_keys(RunConfig, GRID))
# The study's protocol: 500 epochs at every downstream size when a block gives no budget.
DOWNSTREAM_EPOCHS = 500
# steps(N) = ceil(S (N / N_min)^p): p below 1/2 starves the large sizes (epochs fall faster
# than N^-1/2), so the protocol refuses it; p = 1 is a fixed number of epochs above full batch
MIN_STEPS_POWER, MAX_STEPS_POWER = 0.5, 1.0


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


def _resolution(check: Checker, item: Located, where: str) -> int:
    value = check.integer(item, where, 4, MAX_RESOLUTION)
    if value % 2:
        check.fail(item, f"{where} must be even (the spectral solvers need it), got {value}")
    return value


def check_seed(check: Checker, item: Located, where: str) -> int:
    return check.integer(item, where, 0, MAX_SEED)


def check_stage_seeds(check: Checker, fields: dict, where: str) -> list[int] | None:
    """A stage's ``seeds``: a non-empty list of distinct seeds >= 0, one pre-training run
    each (None without the key: the stage is one run, as before the key existed)."""
    item = fields.get("seeds")
    if item is None:
        return None
    if "seed" in fields:  # which one would a run take? say it once
        check.fail(
            item,
            f"{where} has both seed and seeds; keep seeds: [S, ...] (seeds: [S] is one run "
            "with seed S)",
        )
    if not isinstance(item.value, list):
        check.fail(
            item,
            f"{where}.seeds must be a list of pre-training seeds, e.g. [0, 1, 2], got "
            f"{item.value!r}",
        )
    return [
        check_seed(check, s, f"{where}.seeds")
        for s in check.listing(item, f"{where}.seeds", unique=True)
    ]


def _sigma(check: Checker, item: Located, where: str) -> float:
    return check.number(item, where, minimum=MIN_SIGMA, maximum=MAX_SIGMA)


SCALAR_CHECKS = {"resolution": _resolution, "seed": check_seed, "sigma": _sigma}


def check_protocol(check: Checker, item: Located | None) -> int:
    """The study's ``protocol`` (default: today's); 1 reproduces studies run before step-0
    validation existed (their run ids are kept)."""
    if item is None:
        return PROTOCOL
    return check.integer(item, "protocol", 1, PROTOCOL)


def check_steps_power(check, fields: dict, where: str) -> float | None:
    """``steps_power: p`` with ``steps: S``: S steps at the block's smallest size, growing
    like N^p (p in [1/2, 1])."""
    if "steps_power" not in fields:
        return None
    item = fields["steps_power"]
    if "steps" not in fields:
        check.fail(item, f"{where}.steps_power scales steps: S; give steps: S with it")
    value = check.number(item, f"{where}.steps_power")
    if not MIN_STEPS_POWER <= value <= MAX_STEPS_POWER:
        check.fail(
            item,
            f"{where}.steps_power must be in [{MIN_STEPS_POWER:g}, {MAX_STEPS_POWER:g}], got "
            f"{value:g}: below 0.5 the epochs at large N shrink faster than N^-1/2 (starved "
            "runs); for a fixed number of epochs give epochs: E",
        )
    return float(value)


def check_budget(
    check, fields: dict, where_item: Located, where: str, default_epochs: int | None = None
) -> dict:
    """epochs: E (steps grow with N), steps: S, or epochs: CAP with patience: P; without
    either, ``default_epochs`` (None: one is required)."""
    if (
        "epochs" in fields
        and "steps" in fields
        or not ("epochs" in fields or "steps" in fields or default_epochs)
    ):
        check.fail(where_item, f"{where} needs exactly one of epochs or steps")
    if "epochs" not in fields and "steps" not in fields:
        if "patience" in fields:
            check.fail(fields["patience"], f"{where}.patience needs epochs: CAP")
        return {"epochs": default_epochs, "steps": None}
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


def check_lr_grid(check, fields: dict, where: str, default_extend: int) -> dict:
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


def check_train_options(check, fields: dict, where: str, keys: tuple[str, ...]) -> dict:
    """The settings among ``keys`` that ``fields`` sets, checked against their declaration
    (``RunConfig``'s schema), errors at FILE:LINE."""
    declared = settings_of(RunConfig)
    out = {}
    for key in keys:
        if key not in fields:
            continue
        item, name = fields[key], f"{where}.{key}"
        _, schema = declared[key]
        if key in OWN_CHECKS:  # not one schema kind (padding: "auto" or a number)
            out[key] = check.wrap(item, OWN_CHECKS[key], name)
        elif schema.kind == "float":
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


def check_machine(check, item: Located | None) -> dict:
    """The study's ``machine`` block: settings that change where or how fast runs go, not
    what they compute (not in run ids), given to every run."""
    if item is None:
        return {}
    fields = check.mapping(item, "machine", MACHINE_KEYS)
    return check_train_options(check, fields, "machine", tuple(sorted(MACHINE_KEYS)))


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


def check_dataset_ref(check, item: Located, datasets: dict, where: str) -> str:
    item = _ref(item)
    if not isinstance(item.value, str) or item.value not in datasets:
        check.fail(
            item,
            f"{where}: no dataset named {item.value!r}{_did_you_mean(item.value, datasets)} "
            f"(datasets: {', '.join(datasets)})",
        )
    return item.value


def check_init_ref(check, item: Located, stages: dict, where: str) -> str:
    item = _ref(item)
    if not isinstance(item.value, str) or (item.value != "scratch" and item.value not in stages):
        check.fail(
            item,
            f"{where}: init {item.value!r} is neither scratch nor a pre-training stage"
            f"{_did_you_mean(item.value, [*stages, 'scratch'])} "
            f"(stages: {', '.join(stages) or 'none defined'})",
        )
    return item.value


def check_mode(check, item: Located, where: str) -> str:
    if item.value not in TRAIN_MODES:
        hint = " (zero-shot is the zero_shot: true flag)" if item.value == "zero-shot" else ""
        check.fail(
            item,
            f"unknown mode {item.value!r} in {where}; choose from {', '.join(TRAIN_MODES)}" + hint,
        )
    return item.value


def check_preset(check, item: Located, where: str) -> str:
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


def mapping_keys(item: Located) -> set[str]:
    """The keys of a mapping item (none for anything else; ``mapping`` then says what is
    wrong)."""
    return set(item.value) if isinstance(item.value, dict) else set()


def too_many_runs_message(n: int) -> str:
    return (
        f"the study expands to {n:,} or more runs (at most {MAX_RUNS:,}); shorten the lists of "
        "sizes, seeds, lrs, models or tasks, or split it into several studies"
    )


def check_family(check: Checker, item: Located, where: str) -> str:
    names = catalogue.family_names()
    if not catalogue.is_family(item.value):
        close = difflib.get_close_matches(str(item.value), names, n=1)
        hint = f"did you mean {close[0]!r}? " if close else ""
        check.fail(
            item,
            f"unknown PDE family {item.value!r} in {where}; {hint}choose one of {', '.join(names)}",
        )
    return item.value


def check_range(check: Checker, item: Located, where: str) -> tuple[float, float]:
    if not (isinstance(item.value, list) and len(item.value) == 2):
        check.fail(item, f"{where} must be [LOW, HIGH], two numbers")
    low, high = (check.number(v, where) for v in item.value)
    return low, high


def study_words(message: str) -> str:
    """The generator speaks in CLI flags (--n-train, --range); a study file in keys."""
    return re.sub(r"--([a-z][a-z-]*)", lambda m: m.group(1).replace("-", "_"), message)
