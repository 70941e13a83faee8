"""The run config: every choice of a training or evaluation run, explicit, validated, hashed.

``init`` says where the weights come from ("scratch" or a checkpoint directory) and ``mode``
says what is trained; neither is inferred from which other fields happen to be set.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path

from pdefm.errors import PdefmError

MODES = ("full", "head", "frozen-spectral", "lora", "zero-shot")
NEW_CHANNELS = ("error", "init")  # a dataset channel a checkpoint never saw: refuse, or add it
SMALL_DATA = 64  # the study's rule: full-batch training at 64 examples or fewer
# Fields that change where or how fast a run goes, not what it computes: not in its id.
# (tf32 moves GPU results at the level of float32 matmul rounding, as the device does.)
_NOT_IN_ID = ("out", "device", "progress", "run_name", "compile", "tf32")
MAX_EVALUATIONS = 25  # validation passes per run at most; more epochs validate every k-th


@dataclass(frozen=True)
class RunConfig:
    """A training run (or, with mode "zero-shot", an evaluation of ``init``)."""

    data: str
    model: str = "fno-tiny"
    init: str = "scratch"
    mode: str = "full"
    n_train: int | None = None
    subset_seed: int = 0
    lrs: tuple[float, ...] = (1e-3,)
    epochs: int | None = 100
    steps: int | None = None
    batch_size: int = 32
    weight_decay: float = 1e-4
    lora_rank: int = 4
    new_channels: str = "error"
    seed: int = 0
    bf16: bool = False
    device: str = "auto"
    compile: bool = False  # torch.compile the network that is trained
    tf32: bool = True  # TensorFloat-32 matmuls on CUDA (the DFTs of the Fourier layers too)
    out: str = "runs"
    progress: bool = True
    model_overrides: dict = field(default_factory=dict)
    run_name: str | None = None  # directory name under out (default: the run id)

    def __post_init__(self) -> None:
        object.__setattr__(self, "lrs", tuple(float(x) for x in self.lrs))

    # -- identity --------------------------------------------------------------------------
    def resolved(self, data_hash: str) -> dict:
        """The config as it determines results: every field but where/how fast it runs,
        plus the content hash of the dataset (the same data at another path is the same run)."""
        d = asdict(self)
        for key in _NOT_IN_ID:
            d.pop(key)
        d["lrs"] = list(self.lrs)
        d["data_hash"] = data_hash
        d["init"] = self.init if self.init == "scratch" else str(Path(self.init).resolve())
        return d

    @staticmethod
    def run_id(resolved: dict) -> str:
        text = json.dumps(resolved, sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:16]

    def batch_for(self, n_train: int) -> int:
        """Full batch at SMALL_DATA examples or fewer (the study's small-data rule)."""
        return n_train if n_train <= SMALL_DATA else min(self.batch_size, n_train)

    # -- validation ------------------------------------------------------------------------
    def validate(self) -> None:
        """One-line PdefmError naming the first bad field and the fix."""
        if self.mode not in MODES:
            raise PdefmError(f"unknown mode {self.mode!r}; choose one of {', '.join(MODES)}")
        if self.mode != "full" and self.init == "scratch":
            raise PdefmError(
                f"mode {self.mode!r} adapts a pre-trained model: give --init "
                "CHECKPOINT (or use --mode full to train from scratch)"
            )
        if self.n_train is not None and self.n_train <= 0:
            raise PdefmError(f"--n-train must be a positive integer, got {self.n_train}")
        if not self.lrs or any(not (lr > 0 and math.isfinite(lr)) for lr in self.lrs):
            raise PdefmError(f"--lr values must be positive numbers, got {list(self.lrs)}")
        self._validate_budget()
        if self.batch_size <= 0:
            raise PdefmError(f"--batch-size must be positive, got {self.batch_size}")
        if self.new_channels not in NEW_CHANNELS:
            raise PdefmError(
                f"--new-channels must be one of {', '.join(NEW_CHANNELS)}, "
                f"got {self.new_channels!r}"
            )
        if self.mode == "lora" and self.lora_rank <= 0:
            raise PdefmError(f"--lora-rank must be positive, got {self.lora_rank}")

    def _validate_budget(self) -> None:
        if self.mode == "zero-shot":
            return
        if (self.epochs is None) == (self.steps is None):
            raise PdefmError("give exactly one budget: --epochs N or --steps N")
        budget = self.epochs if self.epochs is not None else self.steps
        if budget <= 0:
            raise PdefmError(f"the training budget must be positive, got {budget}")
