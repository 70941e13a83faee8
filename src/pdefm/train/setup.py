"""Before a run is written: the splits opened, the init checkpoint loaded once, the fit of
model, channels, grid and memory checked, the model built, the checkpoint card assembled.

The model's domain padding (``RunConfig.padding``) is resolved here, where the model is built:
"auto" is 0 on a training dataset that is periodic on every side and ``AUTO_PADDING`` on one
that is not, a number is taken as given. From scratch it goes into the arch; a fine-tuned
checkpoint takes the padding of the fine-tuning data (padding has no weights), which its new
checkpoint's arch records. Zero-shot evaluates the checkpoint's arch as it is, unless a number
is given explicitly.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import torch

from pdefm import __version__
from pdefm.checks import check_int, check_memory, human_bytes
from pdefm.data.card import DatasetCard
from pdefm.data.dataset import PDEDataset
from pdefm.errors import PdefmError
from pdefm.train import distributed
from pdefm.train.checkpoint import (
    load_checkpoint,
    map_channels,
    unseen_channels,
)
from pdefm.train.checkpoint_card import (
    CheckpointCard,
    arch_parameter_count,
    checkpoint_hash,
    training_bytes,
)
from pdefm.train.config import AUTO_PADDING, DEVICE_PATTERN, PADDING_AUTO, RunConfig
from pdefm.train.normalise import Normaliser


# -- entry point ---------------------------------------------------------------------------------
@dataclass
class InitCheckpoint:
    """The checkpoint a run starts from, loaded and checked once per run: its model (on the
    CPU; every learning rate trains a copy), card, normaliser, content hash and its path as
    the config gives it (for messages)."""

    model: torch.nn.Module
    card: CheckpointCard
    norm: Normaliser
    hash: str
    path: str


# -- up-front checks -------------------------------------------------------------------------------
def load_init(config: RunConfig) -> InitCheckpoint | None:
    """The checkpoint ``config.init`` loaded and checked (None from scratch)."""
    if config.init == "scratch":
        return None
    model, card, norm = load_checkpoint(config.init)
    if config.mode == "zero-shot" and config.padding != PADDING_AUTO:
        from pdefm.models.registry import with_padding

        with_padding(model, config.padding)  # evaluated as asked; the card stays as saved
    return InitCheckpoint(model, card, norm, checkpoint_hash(config.init, card), config.init)


def resolve_padding(config: RunConfig, card: DatasetCard) -> float:
    """The domain padding fraction a model trained on the dataset of ``card`` gets: "auto" is
    0 when the data are periodic on every side (the Fourier layers' own assumption) and
    ``AUTO_PADDING`` otherwise; a number is used as given."""
    if config.padding != PADDING_AUTO:
        return float(config.padding)
    return 0.0 if card.periodic else AUTO_PADDING


def check_fit(config: RunConfig, train_ds: PDEDataset, init: InitCheckpoint | None, device) -> None:
    """Refuse a run whose pieces do not fit together, before anything is written: an unknown
    preset or model option, channels the checkpoint never saw (without --new-channels init),
    a grid too small for the model's modes, a model and batch that cannot fit in memory."""
    if init is None:
        arch = _scratch_arch(config, len(train_ds.input_channels), len(train_ds.output_channels))
    else:
        check_outputs(init.card.output_channels, train_ds.output_channels, config.init)
        channels = _init_channels(config, init, train_ds.input_channels)
        map_channels(channels, train_ds.input_channels, f"checkpoint {config.init}")
        arch = {**init.card.arch, "in_channels": len(channels)}
    n = train_ds.resolution
    if arch.get("modes"):
        from pdefm.models.spectral import check_grid

        check_grid(n, n, arch["modes"])
    # Still needed: zero-shot passes these checks too, but evaluating needs only the weights,
    # loaded already; a bound on training memory would refuse evaluations that fit.
    if config.mode != "zero-shot":
        padded = {**arch, "padding": resolve_padding(config, train_ds.card)}  # as built below
        _check_training_memory(config, padded, config.batch_for(len(train_ds)), n, device)


def check_outputs(model_outputs: list[str], data_outputs: list[str], where: str) -> None:
    """A checkpoint predicts the dataset's outputs: the same names in the same order, or one
    output each (whatever its name: a single solution field)."""
    if model_outputs == data_outputs or len(model_outputs) == len(data_outputs) == 1:
        return
    raise PdefmError(
        f"checkpoint {where} predicts {', '.join(model_outputs)} but the dataset's outputs are "
        f"{', '.join(data_outputs)}; train from scratch, or use a checkpoint trained on these "
        "outputs"
    )


def _scratch_arch(config: RunConfig, in_channels: int, out_channels: int = 1) -> dict:
    """The arch ``create_model(config.model, in_channels, out_channels, **overrides)`` would
    record, computed without building it (unknown presets and options refused)."""
    from pdefm.models import model_info

    info = model_info(config.model)
    sizes = {k: v for k, v in info.items() if k not in ("name", "label")}
    for key, value in config.model_overrides.items():
        if key not in sizes:
            raise PdefmError(
                f"unknown option {key!r} for model {config.model!r}; choose from {', '.join(sizes)}"
            )
        check_int(value, f"model option {key}", minimum=1)
    sizes.update(config.model_overrides)
    return {
        "name": config.model, "in_channels": in_channels, "out_channels": out_channels, **sizes
    }  # fmt: skip


def _init_channels(config: RunConfig, init: InitCheckpoint, data_channels: list[str]) -> list[str]:
    """The input channels the trained model will have: the checkpoint's, plus the data's
    unseen ones with --new-channels init (not for zero-shot, which changes nothing)."""
    channels = init.card.input_channels
    unseen = unseen_channels(channels, data_channels)
    # Still needed: zero-shot passes these checks too, and evaluates the checkpoint as it is
    # (``evaluate_checkpoint`` adds no channel); counting unseen channels as added would let
    # --new-channels init through here, to fail only after the record is written.
    if unseen and config.new_channels == "init" and config.mode != "zero-shot":
        if init.card.has_lora:
            raise PdefmError(
                f"checkpoint {config.init} has LoRA weights; --new-channels init needs a "
                "checkpoint without LoRA (fine-tune its base model instead)"
            )
        channels += unseen
    return channels


def _check_training_memory(config: RunConfig, arch: dict, batch: int, n: int, device) -> None:
    """A lower bound of what training needs (``training_bytes``) against the memory there is:
    the host's on the CPU, the GPU's total on CUDA. Only clear impossibilities are refused."""
    n_params = arch_parameter_count(arch)
    what = (
        f"training {arch['name']} (about {n_params:.3g} parameters) with batch {batch} at {n}x{n}"
    )
    fix = "use a smaller model or --batch-size, or a machine with more memory"
    if device.type == "cpu":
        check_memory(training_bytes(arch, n_params, batch, n), what, fix)
    elif device.type == "cuda":
        share = max(1, batch // distributed.env_world_size())  # each rank's part of a batch
        need = training_bytes(arch, n_params, share, n)
        total = torch.cuda.get_device_properties(device).total_memory
        if need > total:
            raise PdefmError(
                f"{what} needs about {human_bytes(need)} of GPU memory and {device} has "
                f"{human_bytes(total)}; {fix}"
            )


def open_splits(config: RunConfig) -> dict[str, PDEDataset]:
    train = PDEDataset(config.data, "train")
    # Still needed: zero-shot opens its splits here too but reads no training example; taking
    # the --n-train subset (kept in its run id) would refuse an N larger than the split.
    if config.n_train is not None and config.mode != "zero-shot":
        train = train.subset(config.n_train, seed=config.subset_seed)
    return {
        "train": train,
        "val": PDEDataset(config.data, "val"),
        "test": PDEDataset(config.data, "test"),
    }


# -- building -------------------------------------------------------------------------------------
def build(config: RunConfig, train_ds: PDEDataset, init: InitCheckpoint | None):
    """Model, normaliser, channel map and the base checkpoint card (None from scratch)."""
    channels = train_ds.input_channels
    if init is None:
        from pdefm.models import create_model

        padding = resolve_padding(config, train_ds.card)
        outputs = len(train_ds.output_channels)
        model = create_model(
            config.model, len(channels), outputs, padding=padding, **config.model_overrides
        )
        cmap = map_channels(channels, channels, "the model")
        return model, Normaliser.from_card(train_ds.card), cmap, None
    from pdefm.models.registry import with_padding

    # the fine-tuning data's padding, not the checkpoint's: it has no weights, so it is free
    model = with_padding(copy.deepcopy(init.model), resolve_padding(config, train_ds.card))
    norm = init.norm
    unseen = unseen_channels(init.card.input_channels, channels)
    if unseen and config.new_channels == "init":
        from pdefm.models import add_input_channels

        add_input_channels(model, len(unseen))
        norm = norm.with_channels(unseen, train_ds.card)
    norm = norm.with_dataset(train_ds.card)
    cmap = map_channels(list(norm.channels), channels, f"checkpoint {config.init}")
    return model, norm, cmap, init.card


def checkpoint_card(config, train_ds: PDEDataset, norm: Normaliser, base, lr, init) -> dict:
    datasets = base.datasets if base else []
    datasets.append(_abridged_card(train_ds))
    resolved = config.resolved(train_ds.card.data_hash, init.hash if init else None)
    return {
        "input_channels": list(norm.channels),
        "output_channels": list(train_ds.output_channels),
        "normalisation": norm.to_dict(),
        "datasets": datasets,
        "run_config": {**resolved, "lr": lr},
        "pdefm_version": __version__,
    }


def _abridged_card(ds: PDEDataset) -> dict:
    """What a checkpoint card records of a dataset it was trained on."""
    return {**ds.card.abridged(), "n_train_used": len(ds), "path": str(ds.root)}


def resolve_device(name: object) -> torch.device:
    """ "auto" -> cuda if available else cpu; an unknown or unavailable device is a one-line
    error."""
    if isinstance(name, torch.device):
        name = str(name)
    if not isinstance(name, str) or not DEVICE_PATTERN.match(name):
        raise PdefmError(f"--device must be auto, cpu, cuda, cuda:N or mps, got {name!r}")
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda"):
        if not torch.cuda.is_available():
            raise PdefmError(f"--device {name} asked but CUDA is not available; use --device cpu")
        count = torch.cuda.device_count()
        if ":" in name and int(name.split(":")[1]) >= count:
            raise PdefmError(
                f"--device {name} asked but this machine has {count} GPU(s) (cuda:0 to "
                f"cuda:{count - 1}); pick one of those"
            )
    if name == "mps" and not torch.backends.mps.is_available():
        raise PdefmError("--device mps asked but MPS is not available; use --device cpu")
    return torch.device(name)
