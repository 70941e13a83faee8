"""The power law err(N) = a N^-b + c fitted to mean log errors per size: the model, its
sum of squares, the global grid search over (b, c) with a solved for, and the bounded
Gauss-Newton polish (see ``pdefm.report.fits`` for the method and its tested coverage)."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

B_MAX = 4.0  # steepest exponent searched; b at this bound means a step, not a power law


COARSE = 48  # (b, c) grid points per axis for the global search


FINE = 64  # per axis on the grid around the confidence region


ALPHA_ITERS = 10  # Gauss-Newton steps for log a at fixed (b, c)


@dataclass(frozen=True)
class Sizes:
    """Runs summarised per distinct N: x_i = log N_i, ybar_i, n_i, and W (see module doc)."""

    x: np.ndarray
    y: np.ndarray
    n: np.ndarray
    within: float

    @property
    def runs(self) -> int:
        """Number of runs."""
        return int(self.n.sum())

    @property
    def c_max(self) -> float:
        """Upper bound of c: the smallest per-size geometric-mean error exp(min ybar_i)."""
        return float(np.exp(self.y.min()))

    @property
    def c_free(self) -> tuple[float, float]:
        """Range of c for the intervals, where c is free of sign: +- the largest per-size error."""
        e_max = float(np.exp(self.y.max()))
        return -e_max, e_max


def summarise(n: np.ndarray, err: np.ndarray) -> Sizes:
    """Group runs by N: mean log error, count and the within-size sum of squares."""
    x, y = np.log(n), np.log(err)
    xs, inv = np.unique(x, return_inverse=True)
    counts = np.bincount(inv).astype(float)
    ybar = np.bincount(inv, weights=y) / counts
    return Sizes(xs, ybar, counts, float(((y - ybar[inv]) ** 2).sum()))


@dataclass(frozen=True)
class Groups:
    """Runs grouped by the pre-trained model they share (its pre-training seed): the number
    of groups G, the between-group sum of squares SS_b = sum_g n_g L_g^2 of the group means
    L_g of the size-centred log errors log err_j - ybar_i(j), and sum_g n_g^2."""

    count: int
    between: float
    sum_sq: float


def group_summary(n: np.ndarray, err: np.ndarray, groups: np.ndarray) -> Groups:
    """The ``Groups`` of runs (N_j, err_j) labelled ``groups``. Centring each run on its
    size's mean leaves what the groups differ by, whatever the law (for a design where each
    group has the same sizes, SS_b is exactly the part of the within-size W that a shared
    offset per group explains)."""
    x, y = np.log(n), np.log(err)
    _, size_of = np.unique(x, return_inverse=True)
    ybar = np.bincount(size_of, weights=y) / np.bincount(size_of)
    _, group_of = np.unique(groups, return_inverse=True)
    counts = np.bincount(group_of).astype(float)
    level = np.bincount(group_of, weights=y - ybar[size_of]) / counts
    return Groups(int(counts.size), float((counts * level**2).sum()), float((counts**2).sum()))


def t_cdf_two_sided(t: float, df: int) -> float:
    """P(|T| <= t) for Student's T with integer df (closed form, Abramowitz-Stegun 26.7.3-4).

    theta = atan(t / sqrt(df)); odd df: (2/pi)(theta + sin(theta) sum_k c_k cos^(2k+1)(theta)),
    even df: sin(theta) sum_k d_k cos^(2k)(theta), with the coefficients' running products.
    """
    theta = math.atan(t / math.sqrt(df))
    s, c2 = math.sin(theta), math.cos(theta) ** 2
    if df % 2:
        term, total = math.cos(theta), 0.0
        for k in range(1, (df - 1) // 2 + 1):
            total += term
            term *= c2 * 2 * k / (2 * k + 1)
        return 2 / math.pi * (theta + s * total) if df > 1 else 2 * theta / math.pi
    term, total = 1.0, 0.0
    for k in range(1, df // 2 + 1):
        total += term
        term *= c2 * (2 * k - 1) / (2 * k)
    return s * total


def t_quantile(level: float, df: int) -> float:
    """t with P(|T| <= t) = level (two-sided), by bisection on the closed-form CDF."""
    lo, hi = 0.0, 1.0
    while t_cdf_two_sided(hi, df) < level:
        hi *= 2
    for _ in range(100):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if t_cdf_two_sided(mid, df) < level else (lo, mid)
    return (lo + hi) / 2


def model(s: Sizes, alpha, b, c) -> np.ndarray:
    """log(a N_i^(-b) + c) at every size, broadcast over leading axes (a = exp(alpha))."""
    alpha, b, c = (np.asarray(v, dtype=float)[..., None] for v in (alpha, b, c))
    with np.errstate(invalid="ignore", divide="ignore"):  # a negative c can make m <= 0
        return np.log(np.exp(alpha - b * s.x) + c)


def sse(s: Sizes, alpha, b, c) -> np.ndarray:
    """S(a, b, c) = W + sum_i n_i (ybar_i - log(a N_i^(-b) + c))^2, broadcast; NaN where
    a N_i^(-b) + c <= 0 at some size."""
    return s.within + (s.n * (s.y - model(s, alpha, b, c)) ** 2).sum(axis=-1)


def best_alpha(s: Sizes, b: np.ndarray, c: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """log a minimising S at each fixed (b, c), and sum_i n_i w_i^2 (half of d^2S/dalpha^2).

    Gauss-Newton in alpha: with A_i = a N_i^(-b), w_i = A_i / (A_i + c) = d log(A_i + c)/dalpha,
    the step is sum n w r / sum n w^2 (r the residual). Start: the line through
    log(err_i - c) (exact when c = 0), with err_i - c floored at a twentieth of err_i. A
    negative c needs A_i + c > 0 at the largest N, so alpha stays above log(-c) + b log N_max.
    """
    b, c = (v[..., None] for v in np.broadcast_arrays(np.asarray(b, float), np.asarray(c, float)))
    ey = np.exp(s.y)
    lifted = np.log(np.maximum(ey - c, ey / 20)) + b * s.x
    with np.errstate(divide="ignore"):
        floor = np.where(c < 0, np.log(np.abs(c)) + b * s.x.max() + 1e-9, -np.inf)[..., 0]
    alpha = np.maximum((s.n * lifted).sum(axis=-1) / s.n.sum(), floor)
    for _ in range(ALPHA_ITERS):
        big_a = np.exp(alpha[..., None] - b * s.x)
        w = big_a / (big_a + c)
        r = s.y - np.log(big_a + c)
        curv = np.maximum((s.n * w * w).sum(axis=-1), 1e-300)
        # a large step only where c swamps a (w ~ 0): clip so alpha walks, never jumps
        alpha = np.maximum(alpha + np.clip((s.n * w * r).sum(axis=-1) / curv, -3.0, 3.0), floor)
    big_a = np.exp(alpha[..., None] - b * s.x)
    w = big_a / (big_a + c)
    return alpha, (s.n * w * w).sum(axis=-1)


def model_grid(s: Sizes, b_axis: np.ndarray, c_axis: np.ndarray):
    """S with log a profiled out on the grid b_axis x c_axis: (S, alpha, curvature)."""
    bb, cc = np.meshgrid(b_axis, c_axis, indexing="ij")
    alpha, curv = best_alpha(s, bb, cc)
    values = sse(s, alpha, bb, cc)
    return np.where(np.isfinite(values), values, np.inf), alpha, curv


def jacobian(s: Sizes, theta: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Residuals ybar - log m and the Jacobian of log m in (alpha, b, c), at every size."""
    big_a = np.exp(theta[0] - theta[1] * s.x)
    m = big_a + theta[2]
    w = big_a / m
    return s.y - np.log(m), np.stack([w, -s.x * w, 1 / m], axis=1)


def bounds(c_range: tuple[float, float], alpha: float | None = None):
    """(lower, upper) of (alpha, b, c): b in [0, B_MAX], c in ``c_range``, alpha free or fixed."""
    a_lo, a_hi = (-np.inf, np.inf) if alpha is None else (alpha, alpha)
    return np.array([a_lo, 0.0, c_range[0]]), np.array([a_hi, B_MAX, c_range[1]])


def polish(s: Sizes, theta: np.ndarray, lower: np.ndarray, upper: np.ndarray, iters: int = 100):
    """Levenberg-Marquardt on (alpha, b, c) within [lower, upper] (equal ends fix a parameter).

    A parameter at a bound whose gradient points out of the box is held there (active set),
    the others take the damped Gauss-Newton step (J'NJ + lam diag J'NJ) d = J'N r, clipped
    into the box; a step is kept only if S falls (an undefined S, m <= 0, does not).
    """
    theta = np.clip(theta.astype(float), lower, upper)
    best = float(sse(s, *theta))
    lam = 1e-3
    for _ in range(iters):
        r, jac = jacobian(s, theta)
        h = jac.T @ (s.n[:, None] * jac)
        g = jac.T @ (s.n * r)  # S falls along +g
        free = ~(((theta <= lower) & (g <= 0)) | ((theta >= upper) & (g >= 0)))
        if not free.any():
            break
        hf = h[np.ix_(free, free)]
        step = np.zeros(3)
        try:
            step[free] = np.linalg.solve(hf + lam * np.diag(np.diag(hf) + 1e-12), g[free])
        except np.linalg.LinAlgError:
            lam *= 10
            continue
        trial = np.clip(theta + step, lower, upper)
        value = float(sse(s, *trial))
        if value < best:
            converged = best - value <= 1e-14 * best
            theta, best, lam = trial, value, max(lam / 10, 1e-12)
            if converged:
                break
        else:
            lam *= 10
            if lam > 1e12:
                break
    return theta


def fit_sizes(s: Sizes) -> np.ndarray:
    """Least-squares (alpha, b, c) of the summarised runs with c in [0, c_max]; c = 0 with
    fewer than 3 sizes.

    A coarse (b, c) grid (log a profiled out) finds the global basin, Levenberg-Marquardt the
    minimum. Two sizes: the line through the two mean log errors (c = 0).
    """
    if s.x.size < 2:
        return np.full(3, np.nan)
    if s.x.size < 3:
        slope = (s.y[1] - s.y[0]) / (s.x[1] - s.x[0])
        return np.array([s.y[0] - slope * s.x[0], -slope, 0.0])
    b_axis = np.linspace(0.0, B_MAX, COARSE)
    c_axis = np.linspace(0.0, s.c_max, COARSE)
    values, alpha, _ = model_grid(s, b_axis, c_axis)
    i, j = np.unravel_index(int(np.argmin(values)), values.shape)
    return polish(s, np.array([alpha[i, j], b_axis[i], c_axis[j]]), *bounds((0.0, s.c_max)))


def as_abc(theta: np.ndarray) -> np.ndarray:
    """(alpha, b, c) rows to (a, b, c) rows."""
    out = np.array(theta, dtype=float, ndmin=2)
    out[:, 0] = np.exp(out[:, 0])
    return out
