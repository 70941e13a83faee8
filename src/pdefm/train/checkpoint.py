"""Checkpoints: a directory with ``model.safetensors`` and ``card.json``; loading never unpickles.

The card holds the architecture (``arch``, enough to rebuild the model with
``create_model(**arch)``), the input channel names in order, the normalisation, the dataset
cards the model was trained on (abridged), the run config and final metrics. Both files are
written to temporary names and renamed, the card last: a directory with a card is complete.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from pdefm.data.io import write_json_atomic
from pdefm.errors import PdefmError
from pdefm.train.normalise import Normaliser

WEIGHTS = "model.safetensors"
CARD = "card.json"
FORMAT = "pdefm.checkpoint"


def save_checkpoint(root: str | Path, model: torch.nn.Module, card: dict) -> Path:
    """Write ``model``'s weights and ``card`` (plus format and arch) to ``root``."""
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
    tmp = root / f".{WEIGHTS}.tmp"
    save_file(state, str(tmp), metadata={"format": FORMAT})
    tmp.replace(root / WEIGHTS)
    write_json_atomic(root / CARD, {"format": FORMAT, "arch": model.arch, **card})
    return root


def read_checkpoint_card(root: str | Path) -> dict:
    """The card of the checkpoint in ``root`` (one-line PdefmError if absent or broken)."""
    root = Path(root)
    path = root / CARD
    if not path.is_file():
        raise PdefmError(
            f"{root} is not a pdefm checkpoint (no {CARD}); give a directory "
            "written by `pdefm train`"
        )
    try:
        card = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise PdefmError(
            f"{path} is not valid JSON; the checkpoint is damaged, retrain or restore it"
        ) from None
    if card.get("format") != FORMAT or "arch" not in card:
        raise PdefmError(f"{path} is not a pdefm checkpoint card; give a `pdefm train` output")
    return card


def load_checkpoint(root: str | Path, device: str | torch.device = "cpu"):
    """(model, card, normaliser) from ``root``; weights checked name by name."""
    from pdefm.models import create_model

    root = Path(root)
    card = read_checkpoint_card(root)
    model = create_model(**card["arch"])
    state = _read_weights(root / WEIGHTS)
    _check_keys(root, model, state)
    model.load_state_dict(state)
    return model.to(device), card, Normaliser.from_dict(card["normalisation"])


def _read_weights(path: Path) -> dict[str, torch.Tensor]:
    if not path.is_file():
        raise PdefmError(f"{path} is missing; the checkpoint is incomplete, retrain or restore it")
    try:
        return load_file(str(path))
    except (SafetensorError, OSError, ValueError) as exc:
        reason = str(exc).splitlines()[0][:120]
        raise PdefmError(
            f"{path} is corrupt or truncated ({reason}); retrain or restore the checkpoint"
        ) from None


def _check_keys(root: Path, model: torch.nn.Module, state: dict[str, torch.Tensor]) -> None:
    expected = model.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    if missing or unexpected:
        raise PdefmError(
            f"{root / WEIGHTS} does not match its card's architecture (missing "
            f"{_few(missing)}; unexpected {_few(unexpected)}); the weights and card belong to "
            "different models"
        )
    for key, value in expected.items():
        if value.shape != state[key].shape:
            raise PdefmError(
                f"{root / WEIGHTS}: {key} has shape {tuple(state[key].shape)}, the architecture "
                f"needs {tuple(value.shape)}; the weights and card belong to different models"
            )


def _few(names: list[str]) -> str:
    if not names:
        return "none"
    return ", ".join(names[:3]) + (f" and {len(names) - 3} more" if len(names) > 3 else "")


def channel_order(model_channels: list[str], data_channels: list[str], where: str) -> list[int]:
    """Index of each of the model's input channels in the dataset's channels (mapping by name).

    Raises a one-line PdefmError when the dataset lacks a channel the model needs or has one
    the model has never seen."""
    missing = [c for c in model_channels if c not in data_channels]
    extra = [c for c in data_channels if c not in model_channels]
    if missing or extra:
        raise PdefmError(
            f"{where} cannot map the dataset's channels onto the model's: dataset lacks "
            f"{_few(missing)}, model has never seen {_few(extra)} (model inputs: "
            f"{', '.join(model_channels)}); fine-tune from a checkpoint of the same family"
        )
    return [data_channels.index(c) for c in model_channels]
