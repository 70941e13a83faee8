"""What a checkpoint directory says about its model, read and checked before anything is built.

A checkpoint directory holds ``model.safetensors`` and its description, in one of two files:

- ``card.json``, written by `pdefm train` (format, arch, input and output channel names,
  normalisation, the dataset cards trained on, run config, metrics);
- ``config.json``, Hugging Face style, written by ``Model.save_pretrained`` and alongside every
  card: only what loading needs (``architecture`` name and ``arch_args``, channel names,
  normalisation, the family last trained on).

``read_checkpoint_card`` reads either (the card when both exist) into one ``CheckpointCard``
(typed properties over the card's JSON) and checks every field it uses: types, sizes, channel
counts, normalisation, and that the model the architecture describes fits in memory
(estimated from the arch, nothing allocated). Each problem is one ``PdefmError`` line naming
the file and the field. ``checkpoint_hash`` is the content identity of a checkpoint (weights
bytes plus the fields that define the function), so a copied or moved checkpoint is the same
init for run ids.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path

from pdefm.checks import check_float, check_int, check_memory
from pdefm.data.io import hash_file
from pdefm.errors import PdefmError
from pdefm.train.normalise import Normaliser

WEIGHTS = "model.safetensors"
CARD = "card.json"
CONFIG = "config.json"
FORMAT = "pdefm.checkpoint"
BYTES_TO_LOAD = 8  # per parameter while loading: the file's tensors plus the model's copy
_ARCH_KEYS = ("name", "in_channels", "out_channels", "lora", "padding")
_DAMAGED = "the checkpoint is damaged, restore it or retrain"
_hash_cache: dict[tuple, str] = {}


@dataclass(frozen=True)
class CheckpointCard:
    """A checked checkpoint description: typed properties over the card's JSON (kept as
    written; ``to_json`` gives it back). ``path`` is the file it was read from."""

    data: dict
    path: Path

    @classmethod
    def from_json(cls, data: dict, path: str | Path) -> CheckpointCard:
        """``data`` checked as the description in ``path`` (one-line PdefmError otherwise)."""
        check_card(data, Path(path))
        return cls(data, Path(path))

    def to_json(self) -> dict:
        return self.data

    def config_json(self) -> dict:
        """The ``config.json`` of ``save_pretrained`` for this checkpoint (see ``config_of``)."""
        return config_of(self.data)

    @property
    def arch(self) -> dict:
        """``create_model`` arguments: preset name, channel counts, sizes, optional lora."""
        return dict(self.data["arch"])

    @property
    def has_lora(self) -> bool:
        return bool(self.data["arch"].get("lora"))

    @property
    def input_channels(self) -> list[str]:
        return list(self.data["input_channels"])

    @property
    def output_channels(self) -> list[str]:
        return list(self.data.get("output_channels") or ["solution"])

    @property
    def datasets(self) -> list[dict]:
        """The abridged cards of the datasets it was trained on, oldest first."""
        return list(self.data.get("datasets") or [])

    @property
    def last_family(self) -> str | None:
        return last_family(self.data)

    def normaliser(self) -> Normaliser:
        return normaliser_of(self.data)

    def config(self) -> dict:
        """Its ``config.json``: what loading needs."""
        return config_of(self.data)


def read_checkpoint_card(root: str | Path) -> CheckpointCard:
    """The (checked) card of the checkpoint in ``root``: ``card.json``, else ``config.json``
    as a card. One-line PdefmError naming the file and the field if anything is wrong."""
    root = Path(root)
    if not root.is_dir():
        what = "is a file, not" if root.is_file() else "does not exist; it is not"
        raise PdefmError(
            f"checkpoint {root} {what} a checkpoint directory; give a folder with {WEIGHTS} "
            f"and {CARD} (a `pdefm train` output's checkpoint) or {CONFIG}"
        )
    if (root / CARD).is_file():
        card = _read_json(root / CARD)
    elif (root / CONFIG).is_file():
        card = card_from_config(_read_json(root / CONFIG), root / CONFIG)
    else:
        raise PdefmError(
            f"{root} is not a pdefm checkpoint (no {CARD} or {CONFIG}); give a directory "
            "written by `pdefm train` or Model.save_pretrained"
        )
    path = root / (CARD if (root / CARD).is_file() else CONFIG)
    return CheckpointCard.from_json(card, path)


def _read_json(path: Path) -> dict:
    try:
        data = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError, RecursionError):
        raise PdefmError(f"{path} is not valid JSON; {_DAMAGED}") from None
    except OSError as exc:
        raise PdefmError(f"cannot read {path} ({exc.strerror or exc})") from None
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise PdefmError(
            f'{path} is not a pdefm checkpoint description (no "format": "{FORMAT}"); '
            "give a directory written by `pdefm train` or Model.save_pretrained"
        )
    return data


# -- config.json (Hugging Face style) ------------------------------------------------------------
def config_of(card: dict) -> dict:
    """The ``config.json`` of a checkpoint with ``card``: what loading needs, nothing else."""
    arch = dict(card["arch"])
    return {
        "format": FORMAT,
        "architecture": arch.pop("name"),
        "arch_args": arch,
        "input_channels": list(card["input_channels"]),
        "output_channels": list(card.get("output_channels") or ["solution"]),
        "normalisation": normaliser_of(card).to_dict(),
        "family": last_family(card),
        "pdefm_version": card.get("pdefm_version"),
    }


def card_from_config(config: dict, path: Path) -> dict:
    """A ``config.json`` as a card (the fields ``load_checkpoint`` and ``Model`` read)."""
    name, args = config.get("architecture"), config.get("arch_args")
    if not isinstance(name, str) or not isinstance(args, dict):
        raise PdefmError(
            f"{path}: architecture must be a preset name and arch_args an object, got "
            f"{name!r} and {args!r}; {_DAMAGED}"
        )
    family = config.get("family")
    return {
        "format": FORMAT,
        "arch": {"name": name, **args},
        "input_channels": config.get("input_channels"),
        "output_channels": config.get("output_channels"),
        "normalisation": config.get("normalisation"),
        "datasets": [{"family": family}] if family is not None else [],
        "pdefm_version": config.get("pdefm_version"),
    }


def last_family(card: dict) -> str | None:
    """The family of the dataset the checkpoint was last trained on (None if unrecorded)."""
    datasets = card.get("datasets") or [{}]
    return datasets[-1].get("family")


def normaliser_of(card: dict) -> Normaliser:
    """A checkpoint's normaliser (a pdefm 0.1 card names its family through its datasets)."""
    return Normaliser.from_dict(card["normalisation"], last_family(card))


# -- checks -----------------------------------------------------------------------------------
def check_card(card: dict, path: Path) -> None:
    """Every field loading uses, then the memory the architecture needs (see module doc)."""
    try:
        _check_arch(card.get("arch"), path)
        _check_channels(card, path)
        _check_datasets(card.get("datasets"), path)
        _check_normalisation(card, path)
    except PdefmError as exc:
        raise PdefmError(f"{exc}; {_DAMAGED}") from None
    n = arch_parameter_count(card["arch"])
    check_memory(
        BYTES_TO_LOAD * n,
        f"the model of {path} (arch {_arch_text(card['arch'])}: about {n:.3g} parameters)",
        "the card's sizes are wrong, or load it on a machine with more memory",
    )


def _check_arch(arch: object, path: Path) -> None:
    from pdefm.models import list_models, model_info

    if not isinstance(arch, dict):
        raise PdefmError(f"{path}: arch must be an object, got {_short(arch)}")
    name = arch.get("name")
    if name not in list_models():
        raise PdefmError(
            f"{path}: arch.name {_short(name)} is not a model preset ({', '.join(list_models())})"
        )
    sizes = [k for k in model_info(name) if k not in ("name", "label")]
    for key, value in arch.items():
        if key not in (*_ARCH_KEYS, *sizes):
            raise PdefmError(f"{path}: arch.{key} is not an option of {name}")
        if key in ("name", "lora", "padding") or (value is None and key not in _ARCH_KEYS):
            continue  # None: the factory's default
        check_int(value, f"{path}: arch.{key}", minimum=1)
    if "padding" in arch:  # the FNO's domain padding, a fraction of the grid (no weights)
        check_float(arch["padding"], f"{path}: arch.padding", minimum=0.0, maximum=1.0)
    for key in ("in_channels", "out_channels"):
        check_int(arch.get(key), f"{path}: arch.{key}", minimum=1)
    lora = arch.get("lora")
    if lora is not None:
        if not isinstance(lora, dict) or set(lora) != {"rank", "alpha"}:
            raise PdefmError(f"{path}: arch.lora must be {{rank, alpha}}, got {_short(lora)}")
        check_int(lora["rank"], f"{path}: arch.lora.rank", minimum=1)
        check_float(lora["alpha"], f"{path}: arch.lora.alpha")


def _check_channels(card: dict, path: Path) -> None:
    arch = card["arch"]
    for key, count in (("input_channels", "in_channels"), ("output_channels", "out_channels")):
        names = card.get(key)
        if names is None and key == "output_channels":
            continue  # optional: one output, the solution
        if not (isinstance(names, list) and names and all(isinstance(c, str) and c for c in names)):
            raise PdefmError(f"{path}: {key} must be a list of channel names, got {_short(names)}")
        if len(set(names)) != len(names):
            raise PdefmError(f"{path}: {key} names a channel twice ({', '.join(names)})")
        if len(names) != arch[count]:
            raise PdefmError(
                f"{path}: {key} names {len(names)} channels but arch.{count} is {arch[count]}"
            )


def _check_datasets(datasets: object, path: Path) -> None:
    if datasets is None:
        return
    if not isinstance(datasets, list) or not all(isinstance(d, dict) for d in datasets):
        raise PdefmError(f"{path}: datasets must be a list of objects, got {_short(datasets)}")
    family = datasets[-1].get("family") if datasets else None
    if family is not None and not isinstance(family, str):
        raise PdefmError(f"{path}: datasets[-1].family must be a name, got {_short(family)}")


def _check_normalisation(card: dict, path: Path) -> None:
    where = f"{path}: normalisation"
    try:
        norm = normaliser_of(card)
    except (KeyError, TypeError, ValueError, AttributeError):
        raise PdefmError(
            f"{where} must be {{channels, families: {{family: {{source_norm_median, "
            f"channel_scale}}}}}}, got {_short(card.get('normalisation'))}"
        ) from None
    if list(norm.channels) != card["input_channels"]:
        raise PdefmError(f"{where}.channels differ from input_channels")
    if not norm.families:
        raise PdefmError(f"{where}.families is empty")
    for family, scale in norm.families:
        if not isinstance(family, str):
            raise PdefmError(f"{where}: family names must be text, got {_short(family)}")
        check_float(scale.source_norm_median, f"{where}.{family}.source_norm_median", positive=True)
        if len(scale.channel_scale) != len(norm.channels) - 1:
            raise PdefmError(
                f"{where}.{family}.channel_scale has {len(scale.channel_scale)} values for "
                f"{len(norm.channels) - 1} coefficient channels"
            )
        for value in scale.channel_scale:
            check_float(value, f"{where}.{family}.channel_scale", positive=True)


# -- sizes ----------------------------------------------------------------------------------------
def arch_parameter_count(arch: dict) -> int:
    """Parameters of ``create_model(**arch)`` from its sizes alone (nothing allocated)."""
    from pdefm.models import parameter_count

    sizes = {k: v for k, v in arch.items() if k not in _ARCH_KEYS and v is not None}
    n = parameter_count(arch["name"], arch["in_channels"], arch["out_channels"], **sizes)
    lora = arch.get("lora")
    if lora and "width" in arch and "modes" in arch:  # rank * (rows + cols) per FNO matrix
        w, m, c_in, c_out = arch["width"], arch["modes"], arch["in_channels"], arch["out_channels"]
        h, layers = arch.get("head_width") or 2 * w, arch.get("n_layers") or 4
        pointwise = (w + c_in) + layers * 2 * w + (h + w) + (c_out + h)
        n += lora["rank"] * (pointwise + layers * (w + 4 * w * m * m))
    return n


def _arch_text(arch: dict) -> str:
    sizes = ", ".join(f"{k} {v}" for k, v in arch.items() if k not in ("name", "lora"))
    return f"{arch['name']}, {sizes}"


def training_bytes(arch: dict, n_params: int, batch: int, resolution: int) -> float:
    """A lower bound of the memory training needs: weights, gradients and AdamW's two moments
    (16 bytes a parameter) plus the activations backward keeps, at least two float32 fields
    of width w per Fourier layer, on the padded grid n' = n + round(p n) of domain padding p,
    and two of the head's width (on the n x n grid) per example."""
    width = arch.get("width") or 0
    head = arch.get("head_width") or 2 * width
    padded = resolution + round((arch.get("padding") or 0.0) * resolution)  # as padding_cells
    layers = arch.get("n_layers", 4) * 2 * width * padded * padded
    return 16.0 * n_params + 4.0 * batch * (layers + 2 * head * resolution * resolution)


def _short(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


# -- identity -----------------------------------------------------------------------------------
def checkpoint_hash(root: str | Path, card: CheckpointCard) -> str:
    """SHA-256 (16 hex digits) of the weights file's bytes and the card fields that define the
    function (arch, channels, normalisation, family): where the checkpoint lies, its metrics
    and its provenance do not count. Cached per file (size, mtime) within a process."""
    weights = Path(root) / WEIGHTS
    try:
        stat = weights.stat()
    except OSError:
        raise PdefmError(
            f"{weights} is missing; the checkpoint is incomplete, restore it"
        ) from None
    defining = json.dumps(
        {k: v for k, v in card.config().items() if k != "pdefm_version"}, sort_keys=True
    )
    key = (os.path.realpath(weights), stat.st_size, stat.st_mtime_ns, defining)
    if key not in _hash_cache:
        digest = hash_file(weights, hashlib.sha256(defining.encode()))
        _hash_cache[key] = digest.hexdigest()[:16]
    return _hash_cache[key]
