"""Resumable training state in ONE safetensors file (atomic rename): model and optimiser
tensors, the torch RNG state, and a JSON blob (epoch, step, history, best) in the metadata.

Nothing is pickled: the optimiser's per-parameter tensors are stored by index and its
param-group settings as JSON, then rebuilt into the dict ``load_state_dict`` expects.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save_file

from pdefm.data.io import temp_path
from pdefm.errors import PdefmError


def save_state(path: Path, model: torch.nn.Module, opt: torch.optim.Optimizer, info: dict) -> None:
    """Write the training state to ``path`` atomically (a unique temp file, then renamed)."""
    tensors = {f"model.{k}": v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
    opt_state = opt.state_dict()
    for idx, slots in opt_state["state"].items():
        for key, value in slots.items():
            tensors[f"optim.{idx}.{key}"] = torch.as_tensor(value).detach().contiguous().cpu()
    tensors["rng.torch"] = torch.get_rng_state()
    meta = {"info": json.dumps(info), "param_groups": json.dumps(opt_state["param_groups"])}
    tmp = temp_path(path)  # unique per process and call: concurrent writers never share one
    try:
        save_file(tensors, str(tmp), metadata=meta)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def load_state(path: Path, model: torch.nn.Module, opt: torch.optim.Optimizer) -> dict:
    """Restore model, optimiser and RNG from ``path``; return the saved info dict. A file
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


def _restore(tensors: dict, meta: dict, model: torch.nn.Module, opt: torch.optim.Optimizer):
    model.load_state_dict({k[6:]: v for k, v in tensors.items() if k.startswith("model.")})
    slots: dict[int, dict] = {}
    for key, value in tensors.items():
        if key.startswith("optim."):
            _, idx, name = key.split(".", 2)
            slots.setdefault(int(idx), {})[name] = value
    opt.load_state_dict({"state": slots, "param_groups": json.loads(meta["param_groups"])})
    torch.set_rng_state(tensors["rng.torch"])
    return json.loads(meta["info"])
