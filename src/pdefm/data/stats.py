"""The statistics a dataset card records, from a split's per-sample vectors (numpy, no torch):
the realised parameter law, per-value acceptance of rejecting families, and the train split's
normalisation statistics."""

from __future__ import annotations

import numpy as np

from pdefm.data import store

HISTOGRAM_BINS = 20


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


def normalisation_stats(
    vectors: dict[str, np.ndarray], channel_names: list[str], fields: list[str] = ()
) -> dict:
    """Statistics of the train split used to normalise model inputs (see the training docs):
    the median source norm, per constant channel its median |value| and moments, and per extra
    input field (``fields``) the same of its per-sample RMS ||a|| = sqrt(mean(a^2)), which for
    a constant plane is its |value|: a channel's scale means the same whether it is stored as
    a constant or as a field."""
    channels = vectors["channels"]
    per_channel = {name: _channel(channels[:, i]) for i, name in enumerate(channel_names)}
    for name in fields:
        per_channel[name] = {
            **_channel(vectors[f"{store.FIELD_NORM_GROUP}/{name}"]),
            "kind": "field_rms",
        }
    return {
        "split": "train",
        "source_norm": _moments(vectors["source_norm"]),
        "solution_norm": _moments(vectors["solution_norm"]),
        "channels": per_channel,
    }


def _channel(col: np.ndarray) -> dict:
    return {
        "median_abs": float(np.median(np.abs(col))),
        "mean": float(col.mean()),
        "std": float(col.std()),
        "min": float(col.min()),
        "max": float(col.max()),
    }


def _moments(x: np.ndarray) -> dict:
    return {
        "median": float(np.median(x)),
        "mean": float(x.mean()),
        "min": float(x.min()),
        "max": float(x.max()),
    }
