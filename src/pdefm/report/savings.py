"""Data-savings factors.

N(target) on a curve: sort by N, replace the error by its running minimum over N (a larger
training set can always fall back to the smaller one's model, so the curve is made
non-increasing), find the first N whose error is <= target and interpolate log N linearly in
log error between it and its predecessor. Savings = N_scratch(target) / N_finetune(target).

Where a curve does not bracket the target the answer is a bound:

- not reached at the largest N (N > N_max): scratch -> savings "> N_max_s / N_ft";
  fine-tune -> savings "< N_s / N_max_ft"; neither -> "neither reaches";
- already reached at the smallest N (N <= N_min): fine-tune -> "> N_s / N_min_ft";
  scratch -> "< N_min_s / N_ft"; both -> "both reach it at their smallest N" (no information).

Default targets (see :func:`default_targets`): the errors the scratch curve reaches at its own
sizes, so N_scratch is one of the sizes actually run and never an extrapolation.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

EXACT, AT_MOST, NOT_REACHED = "exact", "at_most", "not_reached"


def monotone(n: Sequence[float], err: Sequence[float]) -> tuple[np.ndarray, np.ndarray]:
    """(N ascending, running minimum of err over N)."""
    n, err = np.asarray(n, dtype=float), np.asarray(err, dtype=float)
    order = np.argsort(n)
    return n[order], np.minimum.accumulate(err[order])


def n_to_reach(n: Sequence[float], err: Sequence[float], target: float) -> tuple[float, str]:
    """N at which a curve first reaches ``target`` and how that N is known.

    Returns (N, "exact") interpolated as log N = log N_j-1 + (log t - log e_j-1)
    (log N_j - log N_j-1) / (log e_j - log e_j-1); (N_min, "at_most") if reached at the
    smallest size; (N_max, "not_reached") if never reached.
    """
    n, e = monotone(n, err)
    hit = np.flatnonzero(e <= target)
    if hit.size == 0:
        return float(n[-1]), NOT_REACHED
    j = int(hit[0])
    if j == 0:
        return float(n[0]), AT_MOST
    # e[j-1] > target >= e[j], so the log-error step is strictly negative
    t = (np.log(target) - np.log(e[j - 1])) / (np.log(e[j]) - np.log(e[j - 1]))
    return float(np.exp(np.log(n[j - 1]) + t * (np.log(n[j]) - np.log(n[j - 1])))), EXACT


def _combine(ns: float, ks: str, nf: float, kf: str) -> tuple[float, str]:
    """Savings value and relation ("=", ">", "<", "neither", "both-at-smallest")."""
    if ks == NOT_REACHED:
        return (np.nan, "neither") if kf == NOT_REACHED else (ns / nf, ">")
    if kf == NOT_REACHED:
        return ns / nf, "<"
    if ks == AT_MOST and kf == AT_MOST:
        return np.nan, "both-at-smallest"
    if kf == AT_MOST:
        return ns / nf, ">"
    return ns / nf, "<" if ks == AT_MOST else "="


def format_savings(value: float, relation: str) -> str:
    """Table text: ``16``, ``> 4``, ``< 2``, ``neither reaches``, ``both at smallest N``."""
    if relation == "neither":
        return "neither reaches"
    if relation == "both-at-smallest":
        return "both at smallest N"
    text = f"{value:.3g}"
    return text if relation == "=" else f"{relation} {text}"


def data_savings(
    scratch: tuple[Sequence[float], Sequence[float]],
    finetune: tuple[Sequence[float], Sequence[float]],
    targets: Sequence[float],
) -> list[dict]:
    """Savings factor N_scratch(target) / N_finetune(target) at each target error.

    ``scratch`` and ``finetune`` are (N, error) curves (typically the mean over seeds). Each
    result holds target, n_scratch, n_finetune, how each was found ("exact" | "at_most" |
    "not_reached"), savings (the value or bound; NaN if none), relation ("=" | ">" | "<" |
    "neither" | "both-at-smallest") and text.
    """
    out = []
    for target in targets:
        ns, ks = n_to_reach(*scratch, target)
        nf, kf = n_to_reach(*finetune, target)
        value, rel = _combine(ns, ks, nf, kf)
        out.append(
            dict(target=float(target), n_scratch=ns, n_finetune=nf, scratch_found=ks,
                 finetune_found=kf, savings=float(value), relation=rel,
                 text=format_savings(value, rel))
        )  # fmt: skip
    return out


def default_targets(n: Sequence[float], err: Sequence[float]) -> list[float]:
    """The distinct errors the (monotone-ised) scratch curve reaches at its sizes."""
    _, e = monotone(n, err)
    return sorted({float(x) for x in e}, reverse=True)


def sig(x: float, digits: int = 3) -> str:
    """x with ``digits`` significant figures, trailing zeros kept (10.0, 1.23, 0.0500)."""
    text = f"{x:#.{digits}g}"
    return text.rstrip(".") if "e" not in text else text
