"""Checkpoints: a directory with ``model.safetensors`` and ``card.json`` (plus its Hugging
Face-style ``config.json``); loading never unpickles.

The card holds the architecture (``arch``, enough to rebuild the model with
``create_model(**arch)``), the input channel names in order, the normalisation, the dataset
cards the model was trained on (abridged), the run config and final metrics; ``config.json``
holds only what loading needs (see ``checkpoint_card``), so the directory also loads where
just that file is expected. Files are written to unique temporary names and renamed: weights,
then config.json, the card last, so a directory with a card is complete.

Loading checks before it allocates: the card (``read_checkpoint_card``: fields and the memory
the architecture needs), then the weights file's header against the architecture (every key,
shape and dtype, read without the tensors), then the tensors themselves (finite values).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save_file

from pdefm.data.io import temp_path, write_json_atomic
from pdefm.errors import PdefmError
from pdefm.train.checkpoint_card import (
    CARD,
    CONFIG,
    FORMAT,
    WEIGHTS,
    CheckpointCard,
    normaliser_of,
    read_checkpoint_card,
)

__all__ = [
    "CARD",
    "CONFIG",
    "FORMAT",
    "WEIGHTS",
    "ChannelMap",
    "load_checkpoint",
    "map_channels",
    "normaliser_of",
    "read_checkpoint_card",
    "save_checkpoint",
    "unseen_channels",
    "write_weights",
]
_FLOAT_DTYPES = ("F32", "F16", "BF16", "F64")  # safetensors' names


def save_checkpoint(root: str | Path, model: torch.nn.Module, card: dict) -> Path:
    """Write ``model``'s weights, ``config.json`` and ``card`` (plus format and arch) to
    ``root``. The card is checked as a reader checks it (``CheckpointCard``) before anything
    is written, so a checkpoint pdefm writes always loads; the card goes last and marks the
    directory complete."""
    root = Path(root)
    checked = CheckpointCard.from_json({"format": FORMAT, "arch": model.arch, **card}, root / CARD)
    root.mkdir(parents=True, exist_ok=True)
    write_weights(root / WEIGHTS, model)
    write_json_atomic(root / CONFIG, checked.config_json())
    write_json_atomic(root / CARD, checked.to_json())
    return root


def write_weights(path: Path, model: torch.nn.Module) -> None:
    """``model``'s state dict as safetensors at ``path`` (a unique temp file, then renamed)."""
    state = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
    tmp = temp_path(path)
    try:
        save_file(state, str(tmp), metadata={"format": FORMAT})
        tmp.replace(path)
    finally:
        tmp.unlink(missing_ok=True)


def load_checkpoint(root: str | Path, device: str | torch.device = "cpu"):
    """(model, card, normaliser) from ``root`` (``card.json`` or ``config.json``), checked as
    the module doc says; every problem is a one-line PdefmError naming the file."""
    from pdefm.models import create_model

    root = Path(root)
    card = read_checkpoint_card(root)
    norm = card.normaliser()
    with torch.device("meta"):  # the expected keys and shapes, without allocating them
        expected = {k: tuple(v.shape) for k, v in create_model(**card.arch).state_dict().items()}
    _check_header(root / WEIGHTS, expected)
    model = create_model(**card.arch)
    state = _read_weights(root / WEIGHTS)
    model.load_state_dict(state)
    return model.to(device), card, norm


def _check_header(path: Path, expected: dict[str, tuple[int, ...]]) -> None:
    """Keys, shapes and dtypes of the weights file against the architecture's."""
    if not path.is_file():
        raise PdefmError(f"{path} is missing; the checkpoint is incomplete, restore it or retrain")
    try:
        with safe_open(str(path), framework="pt") as fh:
            names = fh.keys()
            slices = {k: fh.get_slice(k) for k in names}
            header = {k: (tuple(s.get_shape()), s.get_dtype()) for k, s in slices.items()}
    except (SafetensorError, OSError, ValueError) as exc:
        raise PdefmError(
            f"{path} is corrupt or truncated ({_reason(exc)}); restore the checkpoint or retrain"
        ) from None
    missing = sorted(set(expected) - set(header))
    unexpected = sorted(set(header) - set(expected))
    if missing or unexpected:
        raise PdefmError(
            f"{path} does not match its card's architecture (missing {_few(missing)}; "
            f"unexpected {_few(unexpected)}); the weights and card belong to different models"
        )
    for key, shape in expected.items():
        if header[key][0] != shape:
            raise PdefmError(
                f"{path}: {key} has shape {header[key][0]}, the architecture needs {shape}; "
                "the weights and card belong to different models"
            )
        if header[key][1] not in _FLOAT_DTYPES:
            raise PdefmError(
                f"{path}: {key} has dtype {header[key][1]}, not floating point; the checkpoint "
                "is damaged, restore it or retrain"
            )


def _read_weights(path: Path) -> dict[str, torch.Tensor]:
    try:
        state = load_file(str(path))
    except (SafetensorError, OSError, ValueError) as exc:
        raise PdefmError(
            f"{path} is corrupt or truncated ({_reason(exc)}); restore the checkpoint or retrain"
        ) from None
    for key, value in state.items():
        if not bool(torch.isfinite(value).all()):
            raise PdefmError(
                f"{path}: {key} holds NaN or infinite values; the checkpoint is unusable, use "
                "another one or retrain"
            )
    return state


def _reason(exc: Exception) -> str:
    return (str(exc).splitlines() or [type(exc).__name__])[0][:120]


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
    from pdefm.catalogue import MASK_PREFIX

    unseen = unseen_channels(model_channels, data_channels)
    if unseen:
        raise PdefmError(
            f"{where} has never seen the dataset's channel(s) {_few(unseen)} (model inputs: "
            f"{', '.join(model_channels)}); to learn them, fine-tune with `pdefm train "
            "--new-channels init` (fresh lift columns); otherwise use a checkpoint trained on them"
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
