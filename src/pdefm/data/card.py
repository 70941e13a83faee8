"""The dataset card: a JSON file that describes a dataset and can regenerate it bit for bit.

Written last, atomically, once every split file is final: a directory with a card is a finished
dataset. Imports no torch.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from pdefm.catalogue import SPLITS
from pdefm.checks import contained_path
from pdefm.errors import PdefmError

CARD_NAME = "card.json"
PROGRESS_NAME = ".pdefm-progress.json"
CARD_FORMAT = "pdefm.dataset"
CARD_VERSION = 1
HISTOGRAM_BINS = 20


def load_card(root: str | Path) -> dict:
    """Read and check the card of the dataset in ``root``: a missing, garbled or escaping card
    is a one-line PdefmError naming the file and the field (see ``check_card``)."""
    root = Path(root)
    path = root / CARD_NAME
    if not path.is_file():
        if root.is_file():
            raise PdefmError(f"{root} is a file; give the dataset directory that holds {CARD_NAME}")
        if (root / PROGRESS_NAME).is_file():
            raise PdefmError(
                f"{root} holds an unfinished generation; rerun the same `pdefm generate` "
                "command to finish it"
            )
        raise PdefmError(
            f"{root} is not a pdefm dataset (no {CARD_NAME}); create one with "
            "`pdefm generate FAMILY --out DIR`"
        )
    try:
        card = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise PdefmError(
            f"{path} is not valid JSON ({exc.msg if hasattr(exc, 'msg') else exc});"
            " regenerate the dataset"
        ) from None
    except OSError as exc:
        raise PdefmError(f"{path} cannot be read ({exc.strerror or exc})") from None
    check_card(card, root)
    return card


def check_card(card: object, root: Path) -> None:
    """The fields every reader relies on, with their types; every file a card names must be
    a relative path inside ``root`` (a card cannot send a reader elsewhere)."""
    path = Path(root) / CARD_NAME
    if not isinstance(card, dict):
        raise PdefmError(f"{path} must hold a JSON object, not a {type(card).__name__}")
    if card.get("format") != CARD_FORMAT:
        raise PdefmError(f"{path} is not a pdefm dataset card (format={card.get('format')!r})")
    for key, kind in _REQUIRED.items():
        if key not in card:
            raise PdefmError(f"{path} lacks the field {key!r}; regenerate the dataset")
        if not isinstance(card[key], kind):
            raise PdefmError(
                f"{path} field {key!r} must be {_KIND_NAMES[kind]}, got {card[key]!r:.60}; "
                "regenerate the dataset"
            )
    for split in SPLITS:
        count = _field(card, path, "counts", split)
        if isinstance(count, bool) or not isinstance(count, int) or count < 0:
            raise PdefmError(
                f"{path} field counts.{split} must be a non-negative whole number, got "
                f"{count!r:.60}; regenerate the dataset"
            )
        split_file(root, card, split)
    _check_grid(card, path)
    _check_channels(card, path)


_REQUIRED = {
    "family": str,
    "counts": dict,
    "files": dict,
    "grid": dict,
    "channels": dict,
    "parameter": dict,
    "source_law": dict,
    "spec": dict,
    "command": str,
}
_KIND_NAMES = {str: "a string", dict: "a JSON object", list: "a list"}
MAX_CARD_RESOLUTION = 65536


def _field(card: dict, path: Path, key: str, sub: str) -> object:
    if sub not in card[key]:
        raise PdefmError(f"{path} lacks the field {key}.{sub}; regenerate the dataset")
    return card[key][sub]


def _check_grid(card: dict, path: Path) -> None:
    n = _field(card, path, "grid", "resolution")
    if isinstance(n, bool) or not isinstance(n, int) or not 1 <= n <= MAX_CARD_RESOLUTION:
        raise PdefmError(
            f"{path} field grid.resolution must be a whole number in 1..{MAX_CARD_RESOLUTION}, "
            f"got {n!r:.60}; regenerate the dataset"
        )


def _check_channels(card: dict, path: Path) -> None:
    for key in ("inputs", "outputs"):
        names = _field(card, path, "channels", key)
        if (
            not isinstance(names, list)
            or not names
            or not all(isinstance(name, str) for name in names)
        ):
            raise PdefmError(
                f"{path} field channels.{key} must be a non-empty list of names, got "
                f"{names!r:.60}; regenerate the dataset"
            )


def split_file(root: str | Path, card: dict, split: str) -> Path:
    """The file of ``split`` named by the card, which must stay inside ``root``."""
    name = card["files"].get(split) if isinstance(card.get("files"), dict) else None
    return contained_path(Path(root), name, f"{Path(root) / CARD_NAME} field files.{split}")


def parameter_summary(values: np.ndarray, declared: dict) -> dict:
    """min / max / mean / std of realised parameter values and a histogram.

    Integer laws get one bin per value of the support; continuous ones HISTOGRAM_BINS equal
    bins over the declared range."""
    summary = {
        "n": int(values.size),
        "min": float(values.min()),
        "max": float(values.max()),
        "mean": float(values.mean()),
        "std": float(values.std()),
        "inside_declared_range": bool(
            (values >= declared["low"]).all() and (values <= declared["high"]).all()
        ),
    }
    if declared["kind"] == "uniform_integer":
        support = [float(v) for v in declared["support"]]
        summary["counts"] = {f"{v:g}": int((values == v).sum()) for v in support}
    else:
        counts, edges = np.histogram(
            values, bins=HISTOGRAM_BINS, range=(declared["low"], declared["high"])
        )
        summary["histogram"] = {"edges": edges.tolist(), "counts": counts.tolist()}
    return summary


def acceptance_summary(parameter: np.ndarray, attempts: np.ndarray) -> dict:
    """Accepted samples / sources drawn, per parameter value (families that reject samples)."""
    out = {}
    for value in np.unique(parameter):
        mask = parameter == value
        out[f"{value:g}"] = {
            "accepted": int(mask.sum()),
            "drawn": int(attempts[mask].sum()),
            "rate": float(mask.sum() / attempts[mask].sum()),
        }
    return out


def normalisation_stats(vectors: dict[str, np.ndarray], channel_names: list[str]) -> dict:
    """Statistics of the train split used to normalise model inputs (see the training docs):
    the median source norm, and per coefficient channel its median |value| and moments."""
    channels = vectors["channels"]
    per_channel = {}
    for i, name in enumerate(channel_names):
        col = channels[:, i]
        per_channel[name] = {
            "median_abs": float(np.median(np.abs(col))),
            "mean": float(col.mean()),
            "std": float(col.std()),
            "min": float(col.min()),
            "max": float(col.max()),
        }
    return {
        "split": "train",
        "source_norm": _moments(vectors["source_norm"]),
        "solution_norm": _moments(vectors["solution_norm"]),
        "channels": per_channel,
    }


def _moments(x: np.ndarray) -> dict:
    return {
        "median": float(np.median(x)),
        "mean": float(x.mean()),
        "min": float(x.min()),
        "max": float(x.max()),
    }
