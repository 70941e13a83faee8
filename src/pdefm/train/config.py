"""The run config: every choice of a training or evaluation run, explicit, validated, hashed.

``init`` says where the weights come from ("scratch" or a checkpoint directory) and ``mode``
says what is trained; neither is inferred from which other fields happen to be set.
"""

from __future__ import annotations

import hashlib
import json
import math
import numbers
import re
from dataclasses import asdict, dataclass, field

from pdefm.checks import check_float, check_int, check_name, check_output_dir
from pdefm.errors import PdefmError
from pdefm.train.settings import (
    GRID,
    MACHINE,
    STAGE,
    check_value,
    id_defaults,
    id_exclusions,
    setting,
    settings_of,
)

MODES = ("full", "head", "frozen-spectral", "lora", "zero-shot")
NEW_CHANNELS = ("error", "init")  # a dataset channel a checkpoint never saw: refuse, or add it
# Training losses on normalised data: "mse" (the default), or "rel_l2", the mean per-sample
# relative L2 error (the study's metric): scale-free, so a few examples whose solutions are
# orders of magnitude larger than the rest (advection-diffusion far into advection) do not
# dominate the gradient as they do under MSE.
LOSSES = ("mse", "rel_l2")
LR_SEARCHES = ("grid", "halving")  # every rate the whole budget, or successive halving (search)
SMALL_DATA = 64  # the study's rule: full-batch training at 64 examples or fewer
MAX_EVALUATIONS = 25  # validation passes per run at most; more epochs validate every k-th
MAX_LR_EXTEND = 8  # rounds of learning-rate grid extension at most (each adds a training run)
# The training protocol. 1: the learning rate with the lowest validation error is selected.
# 2: a fine-tuning run also scores its starting weights on validation (step 0) and keeps them
# when no rate beats them. Runs made before the version existed are protocol 1 and keep their
# ids (the version enters a run id only when it is not 1).
PROTOCOL = 2
MAX_SEED = 2**63 - 1  # torch.manual_seed and numpy generators both take it
DEFAULT_LRS = (1e-3,)
DEFAULT_EPOCHS = 100  # the budget when neither epochs nor steps is given
MAX_BATCH = 1 << 20
MAX_LORA_RANK = 4096
# Domain padding of the Fourier layers (pdefm.models.fno): "auto" is none on periodic data and
# AUTO_PADDING x n cells per axis on data with any non-periodic side. benchmarks/padding.py
# (zero-Dirichlet Darcy, 32 x 32, fno-micro, 3 seeds) measured test rel. L2 0.504 unpadded,
# 0.078 at 0.1 and 0.077 at 0.25 (seed sd 0.01-0.015), and 0.084 at 0.5 in a one-seed pilot:
# any padding removes most of the error and 0.1-0.5 tie. 0.25 keeps a margin at coarse grids
# (4 cells at n = 16, where 0.1 gives 2) for about 10% more time per step than 0.1.
PADDING_AUTO = "auto"
AUTO_PADDING = 0.25
_INT_FIELDS = (
    "n_train",
    "subset_seed",
    "epochs",
    "steps",
    "patience",
    "lr_extend",
    "batch_size",
    "lora_rank",
    "seed",
    "protocol",
)
DEVICE_PATTERN = re.compile(r"^(auto|cpu|mps|cuda(:\d{1,3})?)$")


@dataclass(frozen=True)
class FitPlan:
    """The step plan of one learning rate (``RunConfig.plan``): global batches of ``batch``
    examples, ``per_epoch`` = ceil(N / batch) steps per epoch, ``epochs`` and ``steps`` (caps
    when patience may stop earlier; the last epoch may be cut short at ``steps``), validation
    every ``validate_every`` epochs and at the last one."""

    batch: int
    per_epoch: int
    epochs: int
    steps: int
    validate_every: int

    def to_json(self) -> dict:
        """The plan as a run record's "budget" states it (``validate_every`` is not recorded)."""
        return {
            "batch": self.batch,
            "steps_per_epoch": self.per_epoch,
            "epochs": self.epochs,
            "steps": self.steps,
        }


@dataclass(frozen=True)
class StepRule:
    """How an optimiser step is taken: the ``loss`` ("mse" or "rel_l2"), the clip of the
    gradient's global L2 norm (None: no clipping) and bf16 autocast (on CUDA only)."""

    loss: str = "mse"
    grad_clip: float | None = None
    bf16: bool = False

    @classmethod
    def of(cls, config: RunConfig) -> StepRule:
        return cls(config.loss, config.grad_clip, config.bf16)


@dataclass(frozen=True)
class RunConfig:
    """A training run (or, with mode "zero-shot", an evaluation of ``init``).

    The budget is ``epochs`` (steps then grow with the training set: ceil(N / batch) per
    epoch, full batch at SMALL_DATA examples or fewer) or ``steps``; with ``patience`` the
    epochs are a cap and training stops once validation has not improved for ``patience``
    epochs. ``lrs`` is the learning-rate grid; with ``lr_extend`` > 0, a selected rate at an
    edge of the grid makes the grid grow past that edge (next rate on the 1-3-10 ladder) up
    to ``lr_extend`` times before the final choice. ``lr_search`` "halving" trains the rates
    by successive halving instead of each for the whole budget (``pdefm.train.search``).

    Fields made with ``setting`` carry their own schema (``pdefm.train.settings``): the CLI
    flags, the study file's keys and checks, and the run id are derived from them. ``data``,
    ``lrs`` and the budget (``epochs`` / ``steps``) have CLI and study forms of their own.
    """

    data: str
    model: str = "fno-tiny"
    init: str = "scratch"
    mode: str = setting(
        "full", "what is trained: full | head | frozen-spectral | lora | zero-shot", "choice",
        choices=MODES,
    )  # fmt: skip
    n_train: int | None = setting(
        None, "train on a balanced subset of N examples", "int", minimum=1, metavar="N"
    )
    subset_seed: int = setting(0, "which subset", "int", minimum=0, maximum=MAX_SEED)
    lrs: tuple[float, ...] = DEFAULT_LRS
    epochs: int | None = DEFAULT_EPOCHS
    steps: int | None = None
    patience: int | None = setting(
        None, "stop once validation has not improved for P epochs (--epochs is then the cap)",
        "int", minimum=1, omit_default=True, metavar="P",
    )  # fmt: skip
    lr_extend: int = setting(
        0, "when the best rate is the largest or smallest tried, also try the next rate past "
        "that edge (1e-3, 3e-3, 1e-2, ...), up to K times (0: the grid as given)",
        "int", minimum=0, maximum=MAX_LR_EXTEND, omit_default=True, metavar="K",
    )  # fmt: skip
    lr_search: str = setting(
        "grid", "how the learning rates are searched: grid (each trains the whole budget) or "
        "halving (each trains part of it, the better half goes on, the winner finishes it)",
        "choice", choices=LR_SEARCHES, omit_default=True, study=(STAGE, GRID),
    )  # fmt: skip
    batch_size: int = setting(
        32, "batch size above 64 examples (full batch at <= 64); under torchrun the global "
        "batch, shared by the processes", "int", minimum=1, maximum=MAX_BATCH,
        study=(STAGE, GRID),
    )  # fmt: skip
    weight_decay: float = setting(
        1e-4, "AdamW weight decay", "float", minimum=0.0, study=(STAGE, GRID)
    )
    loss: str = setting(
        "mse", "training loss on normalised data: mse, or rel_l2, the mean per-sample relative "
        "L2 error, which a few examples with huge solutions cannot dominate", "choice",
        choices=LOSSES, omit_default=True, study=(STAGE, GRID),
    )  # fmt: skip
    grad_clip: float | None = setting(
        None, "clip the gradient's global L2 norm at C before each step (default: no "
        "clipping)", "float", positive=True, omit_default=True, study=(STAGE, GRID),
        metavar="C",
    )  # fmt: skip
    lora_rank: int = setting(
        4, "rank for --mode lora", "int", minimum=1, maximum=MAX_LORA_RANK, study=(GRID,)
    )
    padding: str | float = setting(
        PADDING_AUTO, "zero-pad the Fourier layers' features by P x n cells per axis, for "
        f"non-periodic data: auto ({AUTO_PADDING:g} if the data have a non-periodic side, else "
        "0) or P in [0, 1]", "text", omit_default=True, metavar="P", study=(STAGE, GRID),
    )  # fmt: skip
    new_channels: str = setting(
        "error", "a dataset channel the checkpoint never saw: refuse (error), or give it a "
        "freshly initialised (zero) lift column and learn it (init)", "choice",
        choices=NEW_CHANNELS, study=(GRID,),
    )  # fmt: skip
    protocol: int = setting(
        PROTOCOL, "training protocol: 2 scores a fine-tuning run's starting weights on "
        "validation and keeps them when no learning rate beats them; 1 (earlier runs) does not",
        "int", minimum=1, maximum=PROTOCOL, omit_default=True, legacy=1, metavar="V",
    )  # fmt: skip
    seed: int = setting(
        0, "initialisation and data order seed", "int", minimum=0, maximum=MAX_SEED,
        study=(STAGE,),
    )  # fmt: skip
    bf16: bool = setting(
        False, "bf16 autocast on CUDA (FFTs in float32); changes the numbers, so it is part "
        "of the run", "bool", study=(STAGE, GRID),
    )  # fmt: skip
    device: str = setting(
        "auto", "auto (cuda if present), cpu, cuda[:N] or mps", "text", in_id=False,
        study=(MACHINE,),
    )  # fmt: skip
    compile: bool = setting(
        False, "torch.compile the model (faster steps on GPU after a slow first one)", "bool",
        in_id=False, study=(MACHINE,),
    )  # fmt: skip
    # TF32 moves GPU results at the level of float32 matmul rounding, as the device does
    tf32: bool = setting(
        True, "strict float32 matmuls on CUDA (default: TF32, faster and slightly less "
        "precise)", "bool", in_id=False, study=(MACHINE,), flag="--no-tf32",
    )  # fmt: skip
    out: str = field(default="runs", metadata={"in_id": False})
    progress: bool = field(default=True, metadata={"in_id": False})
    model_overrides: dict = field(default_factory=dict)
    # directory name under out (default: the run id)
    run_name: str | None = field(default=None, metadata={"in_id": False})

    def __post_init__(self) -> None:
        # Python API conveniences: one learning rate may be given bare, numpy numbers become
        # Python ones; anything else is left as given for validate() to name.
        lrs = (self.lrs,) if _is_real(self.lrs) else self.lrs
        if isinstance(lrs, (tuple, list)):
            lrs = tuple(float(x) if _is_real(x) else x for x in lrs)
        object.__setattr__(self, "lrs", lrs)
        for name in _INT_FIELDS:
            value = getattr(self, name)
            if isinstance(value, numbers.Integral) and not isinstance(value, bool):
                object.__setattr__(self, name, int(value))
        object.__setattr__(self, "padding", _padding_value(self.padding))

    # -- identity --------------------------------------------------------------------------
    def resolved(self, data_hash: str, init_hash: str | None = None) -> dict:
        """The config as it determines results: every field but where/how fast it runs, with
        the dataset's content hash in place of its path and, for a checkpoint ``init``, the
        checkpoint's content hash (``checkpoint_hash``) in place of its path: the same data or
        weights at another path (a moved study, a copied checkpoint) are the same run."""
        d = asdict(self)
        for key in id_exclusions(RunConfig):
            d.pop(key)
        d["lrs"] = list(self.lrs)
        for key, default in id_defaults(RunConfig).items():
            if d[key] == default:
                del d[key]
        d["data_hash"] = data_hash
        if self.init != "scratch":
            if init_hash is None:
                raise ValueError("a checkpoint init needs its content hash")
            d["init"] = f"sha256:{init_hash}"
        return d

    @staticmethod
    def run_id(resolved: dict) -> str:
        text = json.dumps(resolved, sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:16]

    def batch_for(self, n_train: int) -> int:
        """Full batch at SMALL_DATA examples or fewer (the study's small-data rule)."""
        return n_train if n_train <= SMALL_DATA else min(self.batch_size, n_train)

    def plan(self, n_train: int) -> FitPlan:
        """The step plan of one learning rate on ``n_train`` examples: batch, steps per epoch
        (ceil(N / batch)), epochs and steps (the cap, with patience), and how often to validate
        (at most MAX_EVALUATIONS times, and at least every patience / 4 epochs)."""
        batch = self.batch_for(n_train)
        per_epoch = math.ceil(n_train / batch)
        if self.steps is not None:
            epochs, steps = math.ceil(self.steps / per_epoch), self.steps
        else:
            epochs, steps = self.epochs, self.epochs * per_epoch
        every = max(1, math.ceil(epochs / MAX_EVALUATIONS))
        if self.patience is not None:  # validate often enough to notice a plateau in time
            every = min(every, max(1, self.patience // 4))
        return FitPlan(
            batch=batch, per_epoch=per_epoch, epochs=epochs, steps=steps, validate_every=every
        )

    # -- validation ------------------------------------------------------------------------
    def validate(self) -> None:
        """One-line PdefmError naming the first bad field (by its CLI option) and the fix.

        Types, signs, finiteness and ranges (and that --out is not a file). Whether the model
        preset, the dataset and the checkpoint exist and fit together is checked by the
        training loop, still before anything is written."""
        self._validate_paths()
        self._validate_settings()
        if self.mode != "full" and self.init == "scratch":
            raise PdefmError(
                f"mode {self.mode!r} adapts a pre-trained model: give --init "
                "CHECKPOINT (or use --mode full to train from scratch)"
            )
        if not isinstance(self.model, str) or not self.model:
            raise PdefmError(f"--model must be a preset name, got {self.model!r}")
        self._validate_lrs()
        self._validate_budget()
        self._validate_switches()

    def _validate_settings(self) -> None:
        """Every declared setting against its schema, named by its CLI flag; an optional
        setting (default None) may stay None."""
        for name, (f, schema) in settings_of(RunConfig).items():
            value = getattr(self, name)
            if value is None and f.default is None:
                continue
            label = schema.flag_name(name).replace("--no-", "--")
            if name in OWN_CHECKS:  # a setting of two kinds (a word or a number)
                OWN_CHECKS[name](value, label)
            else:
                check_value(value, schema, label)

    def _validate_paths(self) -> None:
        for value, option in ((self.data, "--data"), (self.init, "--init"), (self.out, "--out")):
            if not isinstance(value, str) or not value.strip():
                raise PdefmError(f"{option} must be a path, got {value!r}")
        check_output_dir(self.out, "--out")
        if self.run_name is not None:
            check_name(self.run_name, "run name")

    def _validate_lrs(self) -> None:
        if not isinstance(self.lrs, tuple) or not self.lrs:
            raise PdefmError(f"--lr needs at least one learning rate, got {self.lrs!r}")
        for lr in self.lrs:
            check_float(lr, "--lr", positive=True)
        names = [f"{lr:g}" for lr in self.lrs]  # each lr trains in the folder lr-{lr:g}
        repeated = sorted({n for n in names if names.count(n) > 1})
        if repeated:
            raise PdefmError(
                f"--lr {repeated[0]} is given more than once (at 6 significant digits); give "
                "each learning rate once"
            )

    def _validate_budget(self) -> None:
        if self.mode == "zero-shot":
            return
        if (self.epochs is None) == (self.steps is None):
            raise PdefmError("give exactly one budget: --epochs N or --steps N")
        if self.epochs is not None:
            check_int(self.epochs, "--epochs", minimum=1)
        else:
            check_int(self.steps, "--steps", minimum=1)
        if self.patience is not None and self.epochs is None:
            raise PdefmError(
                "--patience stops on validation within an epoch cap: give --epochs CAP "
                "instead of --steps"
            )

    def _validate_switches(self) -> None:
        if not isinstance(self.device, str) or not DEVICE_PATTERN.match(self.device):
            raise PdefmError(
                f"--device must be auto, cpu, cuda, cuda:N or mps, got {self.device!r}"
            )
        if not isinstance(self.progress, bool):
            raise PdefmError(f"progress must be True or False, got {self.progress!r}")
        if not isinstance(self.model_overrides, dict) or not all(
            isinstance(k, str) for k in self.model_overrides
        ):
            raise PdefmError(
                f"model_overrides must map option names to values, got {self.model_overrides!r}"
            )


def cli_settings() -> tuple[str, ...]:
    """The settings that ``pdefm train`` takes as flags of their own, in --help order."""
    return tuple(settings_of(RunConfig))


def _is_real(x: object) -> bool:
    return isinstance(x, numbers.Real) and not isinstance(x, bool)


def _padding_value(value: object) -> object:
    """A padding given as a number, or as a numeric string (the CLI's ``--padding 0.25``), as
    a float: 0.25, "0.25" and 1 vs 1.0 are then one run id. Anything else is kept for
    ``check_padding`` to name."""
    if _is_real(value):
        return float(value)
    if isinstance(value, str) and value != PADDING_AUTO:
        try:
            return float(value)
        except ValueError:
            return value
    return value


def check_padding(value: object, label: str = "--padding") -> str | float:
    """``value`` if it is "auto" or a number in [0, 1]; else a one-line PdefmError."""
    if value == PADDING_AUTO and isinstance(value, str):
        return value
    if not _is_real(value) or not 0.0 <= value <= 1.0:  # also refuses NaN
        shown = f"{value:g}" if _is_real(value) else repr(value)
        raise PdefmError(
            f"{label} must be auto or a fraction of the grid in [0, 1], got {shown}; give "
            f"e.g. {label} {AUTO_PADDING:g} (0 for none) or leave it at auto"
        )
    return value


# settings whose check is not one schema kind: name -> check(value, label)
OWN_CHECKS = {"padding": check_padding}
