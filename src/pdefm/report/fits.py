"""Scaling-law fits err(N) = a N^(-b) + c with bootstrap confidence intervals, numpy only.

Fit (no scipy): for an offset c on a grid in [0, min(err)), log(err - c) = log a - b log N is
linear, so a and b follow by least squares in closed form; the c kept is the one whose law
a N^(-b) + c has the lowest squared error in log(err). The grid has 50 values c_j = j/50 min(err)
(j = 0..49, so c = 0 is always a candidate), then 50 more between the neighbours of the best one
(a refinement: the first grid's step, min(err)/50, would otherwise bias b when c is near
min(err)). With fewer than three distinct N any c fits exactly, so c = 0 (a pure power law).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

GRID = 50


@dataclass(frozen=True)
class PowerLawFit:
    """A fitted law err(N) = a N^(-b) + c with percentile intervals.

    ``ci`` maps "a", "b", "c" to (low, high); ``bootstrap`` says what was resampled: "seeds"
    (whole seeds, with replacement), "points" (single (N, err) pairs, when there is one seed)
    or "none" (too few points to resample).
    """

    a: float
    b: float
    c: float
    ci: dict[str, tuple[float, float]] = field(default_factory=dict)
    bootstrap: str = "none"
    n_points: int = 0
    n_seeds: int = 0

    def predict(self, n: np.ndarray | float) -> np.ndarray:
        """err(N) = a N^(-b) + c."""
        return self.a * np.asarray(n, dtype=float) ** (-self.b) + self.c


def _linear_fits(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Least-squares lines y[g] ~ p[g] + q[g] x for each row g of y (G, P); returns (p, q)."""
    xc = x - x.mean()
    q = (y - y.mean(axis=1, keepdims=True)) @ xc / max(float(xc @ xc), 1e-300)
    p = y.mean(axis=1) - q * x.mean()
    return p, q


def _best_on_grid(x: np.ndarray, err: np.ndarray, cs: np.ndarray) -> tuple[float, float, float]:
    """(a, b, c) of the grid value c with the lowest squared error in log(err)."""
    logp, q = _linear_fits(x, np.log(err[None, :] - cs[:, None]))
    pred = np.log(np.exp(logp)[:, None] * np.exp(q[:, None] * x[None, :]) + cs[:, None])
    loss = ((np.log(err)[None, :] - pred) ** 2).sum(axis=1)
    g = int(np.argmin(loss))  # the first minimum: ties (e.g. two sizes) keep the smaller c
    return float(np.exp(logp[g])), float(-q[g]), float(cs[g])


def fit_once(n: np.ndarray, err: np.ndarray) -> tuple[float, float, float]:
    """Point estimate (a, b, c) of err = a N^(-b) + c; NaNs if fewer than two distinct N."""
    x = np.log(np.asarray(n, dtype=float))
    err = np.asarray(err, dtype=float)
    if np.unique(x).size < 2:
        return (np.nan, np.nan, np.nan)
    if np.unique(x).size < 3:
        return _best_on_grid(x, err, np.zeros(1))
    step = err.min() / GRID
    coarse = _best_on_grid(x, err, step * np.arange(GRID))
    lo, hi = max(coarse[2] - step, 0.0), min(coarse[2] + step, err.min() * (1 - 1e-9))
    fine = _best_on_grid(x, err, np.append(np.linspace(lo, hi, GRID), coarse[2]))
    return fine


def _clean(n, err, seeds) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Drop points whose N or error is not positive and finite (log would be undefined)."""
    n, err = np.asarray(n, dtype=float), np.asarray(err, dtype=float)
    seeds = np.zeros(n.size, dtype=int) if seeds is None else np.asarray(seeds)
    ok = np.isfinite(n) & np.isfinite(err) & (n > 0) & (err > 0)
    return n[ok], err[ok], seeds[ok]


def _resample(n, err, seeds, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """One bootstrap sample: whole seeds with replacement, or points when there is one seed."""
    labels = np.unique(seeds)
    if labels.size > 1:
        pick = rng.choice(labels, size=labels.size, replace=True)
        idx = np.concatenate([np.flatnonzero(seeds == s) for s in pick])
    else:
        idx = rng.integers(0, n.size, size=n.size)
    return n[idx], err[idx]


def fit_power_law(
    n, err, seeds=None, n_boot: int = 200, level: float = 0.95, rng: int = 0
) -> PowerLawFit:
    """Fit err(N) = a N^(-b) + c to runs (N_i, err_i) and bootstrap a ``level`` percentile CI.

    ``seeds`` labels each run; the bootstrap resamples whole seeds with replacement and refits
    (``n_boot`` times), or single points when all runs share one seed. Deterministic: the
    resampling stream is seeded with ``rng``.
    """
    n, err, seeds = _clean(n, err, seeds)
    a, b, c = fit_once(n, err) if n.size else (np.nan, np.nan, np.nan)
    n_seeds = int(np.unique(seeds).size)
    kind = "seeds" if n_seeds > 1 else "points"
    if n.size < 3 or np.isnan(a):
        return PowerLawFit(a, b, c, {}, "none", int(n.size), n_seeds)
    gen = np.random.default_rng(rng)
    boots = np.array([fit_once(*_resample(n, err, seeds, gen)) for _ in range(n_boot)])
    tail = 100 * (1 - level) / 2
    lo, hi = np.nanpercentile(boots, [tail, 100 - tail], axis=0)
    ci = {name: (float(lo[i]), float(hi[i])) for i, name in enumerate("abc")}
    return PowerLawFit(a, b, c, ci, kind, int(n.size), n_seeds)
