"""Resumable training state in ONE safetensors file (atomic rename): model and optimiser
tensors, the torch RNG state, and where training stands (``FitState``: epoch, step, history,
best, ...) as JSON in the metadata entry "info".

Nothing is pickled: the optimiser's per-parameter tensors are stored by index and its
param-group settings as JSON, then rebuilt into the dict ``load_state_dict`` expects.
"""

from __future__ import annotations

import json
import math
import os
import time
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save_file

from pdefm.data.io import temp_path
from pdefm.errors import PdefmError

STATE = "state.safetensors"  # a learning rate's state file, in its folder lr-X/


@dataclass
class FitState:
    """Where the training of one learning rate stands; saved with the weights at each
    validation epoch. ``epoch`` and ``step`` are those done, ``history`` holds one entry per
    validation ({"epoch", "step", "train_loss", "val_rel_l2", "lr"}, as the run record keeps
    it), ``best`` is the lowest validation error so far (reached at ``best_epoch``), and
    ``status`` is "running", "completed" or "failed" (then with its ``reason``);
    ``stopped_early``: patience ended it. What it cost, summed over every process that
    trained it (``segments``): ``wall_s`` and ``cpu_s`` (process CPU seconds: core-seconds,
    every thread counted) up to the last saved state, ``samples`` training examples stepped
    on and ``evaluated`` validation examples scored."""

    epoch: int = 0
    step: int = 0
    history: list[dict] = field(default_factory=list)
    best: float = math.inf
    best_epoch: int = 0
    status: str = "running"
    reason: str | None = None
    stopped_early: bool = False
    wall_s: float = 0.0
    cpu_s: float = 0.0
    samples: int = 0
    evaluated: int = 0
    segments: int = 0

    def to_json(self) -> dict:
        """Every field, the optional ones too: versions before FitState read those with
        defaults, so they resume from this state as well."""
        return asdict(self)

    @classmethod
    def from_json(cls, info: dict) -> FitState:
        """The state from its JSON, also as pdefm wrote it before FitState: a key that is
        missing (``best_epoch``, ``reason``, ``stopped_early`` were written only once set)
        takes its default; keys this version does not know are ignored."""
        if not isinstance(info, dict):
            raise ValueError(f"training info is {type(info).__name__}, not an object")
        return cls(**{f.name: info[f.name] for f in fields(cls) if f.name in info})


# Validation gain over the budget's second half that counts as still improving. Measured on
# the demo's data, doubling a budget moved the test error by up to 1.5 times that gain (a
# cosine schedule flattens the end of every curve), so half of a 10% tolerance is used.
STILL_IMPROVING = 0.05


def converged(history: list[dict], epochs: int, stopped_early: bool = False) -> bool | None:
    """Whether training had stopped improving by the end of its budget.

    If the validation error falls like a power of the steps, err(t) ~ t^(-alpha), the gain
    over the second half of a budget, 1 - err(T) / err(T/2), is the gain that doubling the
    budget would bring (in practice up to about 1.5 times more). So a run counts as converged
    when its best validation error improved by less than STILL_IMPROVING over the second half
    of its epochs:
    min(val, epoch > E/2) >= (1 - STILL_IMPROVING) min(val, epoch <= E/2), or when patience
    stopped it. False: still improving (the budget limited the result). None: too few
    validations on either side of E/2 to tell."""
    if stopped_early:
        return True
    early = [h["val_rel_l2"] for h in history if h["epoch"] <= epochs / 2]
    late = [h["val_rel_l2"] for h in history if h["epoch"] > epochs / 2]
    if not early or not late:
        return None
    return bool(min(late) >= (1 - STILL_IMPROVING) * min(early))


class SegmentClock:
    """Adds this process's time to a ``FitState``: made when a process starts (or resumes)
    training a rate, ``update`` before each save sets the state's totals to what earlier
    segments saved plus the time since. A killed segment's time after its last save is lost
    (at most one validation interval), so the totals are a lower bound by that much."""

    def __init__(self, state: FitState) -> None:
        self.wall0, self.cpu0 = state.wall_s, state.cpu_s
        self.t0, self.c0 = time.perf_counter(), time.process_time()
        if state.status == "running":
            state.segments += 1

    def update(self, state: FitState) -> None:
        state.wall_s = round(self.wall0 + time.perf_counter() - self.t0, 3)
        state.cpu_s = round(self.cpu0 + time.process_time() - self.c0, 3)


def save_state(
    path: Path, model: torch.nn.Module, opt: torch.optim.Optimizer, state: FitState
) -> None:
    """Write the training state to ``path`` atomically (a unique temp file, then renamed)."""
    tensors = {f"model.{k}": v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
    opt_state = opt.state_dict()
    for idx, slots in opt_state["state"].items():
        for key, value in slots.items():
            tensors[f"optim.{idx}.{key}"] = torch.as_tensor(value).detach().contiguous().cpu()
    tensors["rng.torch"] = torch.get_rng_state()
    meta = {
        "info": json.dumps(state.to_json()),
        "param_groups": json.dumps(opt_state["param_groups"]),
    }
    tmp = temp_path(path)  # unique per process and call: concurrent writers never share one
    try:
        save_file(tensors, str(tmp), metadata=meta)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def load_state(path: Path, model: torch.nn.Module, opt: torch.optim.Optimizer) -> FitState:
    """Restore model, optimiser and RNG from ``path``; return the saved ``FitState``. A file
    that cannot be read or does not fit the model is a one-line PdefmError."""
    try:
        tensors = load_file(str(path))
        with safe_open(str(path), framework="pt") as fh:
            meta = fh.metadata()
        return _restore(tensors, meta, model, opt)
    except (SafetensorError, OSError, ValueError, KeyError, TypeError, RuntimeError) as exc:
        reason = (str(exc).splitlines() or [type(exc).__name__])[0][:120]
        raise PdefmError(
            f"training state {path} is damaged ({reason}); delete it to restart that learning "
            "rate from scratch"
        ) from None


def _restore(
    tensors: dict, meta: dict, model: torch.nn.Module, opt: torch.optim.Optimizer
) -> FitState:
    model.load_state_dict({k[6:]: v for k, v in tensors.items() if k.startswith("model.")})
    slots: dict[int, dict] = {}
    for key, value in tensors.items():
        if key.startswith("optim."):
            _, idx, name = key.split(".", 2)
            slots.setdefault(int(idx), {})[name] = value
    opt.load_state_dict({"state": slots, "param_groups": json.loads(meta["param_groups"])})
    torch.set_rng_state(tensors["rng.torch"])
    return FitState.from_json(json.loads(meta["info"]))
