"""The dataset card: a JSON file that describes a dataset and can regenerate it bit for bit.

Written last, atomically, once every split file is final: a directory with a card is a finished
dataset. Imports no torch.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from pdefm.errors import PdefmError

CARD_NAME = "card.json"
PROGRESS_NAME = ".pdefm-progress.json"
CARD_FORMAT = "pdefm.dataset"
CARD_VERSION = 1
HISTOGRAM_BINS = 20


def load_card(root: str | Path) -> dict:
    """Read the card of the dataset in ``root``, with a clear error when there is none."""
    root = Path(root)
    path = root / CARD_NAME
    if not path.is_file():
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
    if card.get("format") != CARD_FORMAT:
        raise PdefmError(f"{path} is not a pdefm dataset card (format={card.get('format')!r})")
    return card


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
