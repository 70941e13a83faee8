"""Checkpoints: a directory with ``model.safetensors`` and ``card.json``; loading never unpickles.

The card holds the architecture (``arch``, enough to rebuild the model with
``create_model(**arch)``), the input channel names in order, the normalisation, the dataset
cards the model was trained on (abridged), the run config and final metrics. Both files are
written to temporary names and renamed, the card last: a directory with a card is complete.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
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
    return model.to(device), card, normaliser_of(card)


def normaliser_of(card: dict) -> Normaliser:
    """A checkpoint's normaliser (a pdefm 0.1 card names its family through its datasets)."""
    datasets = card.get("datasets") or [{}]
    return Normaliser.from_dict(card["normalisation"], datasets[-1].get("family"))


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


@dataclass(frozen=True)
class ChannelMap:
    """How a dataset's input channels feed a model's, by name.

    ``index[i]`` is the data channel of model channel i; ``len(data)`` stands for a channel of
    zeros (a coefficient the dataset's family lacks, or an absent mask) and ``len(data) + 1``
    for ones (the presence mask ``has_X`` of a coefficient X the dataset has)."""

    model: tuple[str, ...]
    data: tuple[str, ...]
    index: tuple[int, ...]

    def apply(self, inputs: torch.Tensor) -> torch.Tensor:
        """Data-ordered inputs (B, len(data), H, W) -> model-ordered (B, len(model), H, W)."""
        if self.index == tuple(range(len(self.data))):
            return inputs
        b, _, h, w = inputs.shape
        const = torch.stack([inputs.new_zeros(b, h, w), inputs.new_ones(b, h, w)], 1)
        return torch.cat([inputs, const], 1)[:, list(self.index)]

    def describe(self) -> dict[str, str]:
        """Model channel -> the data channel feeding it, or "zero" / "one" (for the record)."""
        names = [*self.data, "zero", "one"]
        return {m: names[i] for m, i in zip(self.model, self.index, strict=True)}


def unseen_channels(model_channels: list[str], data_channels: list[str]) -> list[str]:
    """The dataset's channels that the model has never seen, in data order."""
    return [c for c in data_channels if c not in model_channels]


def map_channels(model_channels: list[str], data_channels: list[str], where: str) -> ChannelMap:
    """Map a dataset's channels onto a model's by name (see ``ChannelMap``).

    A model channel the dataset lacks is zero (its mask ``has_X`` zero too), as for a family
    without that coefficient in a mixture. A dataset channel the model has never seen is a
    one-line PdefmError: it would be silently ignored otherwise."""
    from pdefm.data.mixture import MASK_PREFIX

    unseen = unseen_channels(model_channels, data_channels)
    if unseen:
        raise PdefmError(
            f"{where} has never seen the dataset's channel(s) {_few(unseen)} (model inputs: "
            f"{', '.join(model_channels)}); fine-tune with --new-channels init to give them "
            "freshly initialised lift columns, or use a checkpoint trained on them"
        )
    if model_channels[0] not in data_channels:
        raise PdefmError(
            f"the dataset has no {model_channels[0]!r} channel, which {where} needs first; "
            "import the forcing as 'source'"
        )
    zero, one = len(data_channels), len(data_channels) + 1
    index = []
    for c in model_channels:
        if c in data_channels:
            index.append(data_channels.index(c))
        elif c.startswith(MASK_PREFIX):
            index.append(one if c[len(MASK_PREFIX) :] in data_channels else zero)
        else:
            index.append(zero)
    return ChannelMap(tuple(model_channels), tuple(data_channels), tuple(index))
