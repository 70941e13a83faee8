"""Scaling-law fits err(N) = a N^(-b) + c with profile-likelihood confidence intervals, numpy only.

Model: each run's log error is the law plus independent Gaussian noise (lognormal errors),

    log err_j = log(a N_j^(-b) + c) + e_j,    e_j ~ N(0, sigma^2),

so the maximum-likelihood fit minimises the squared error in log error,

    S(a, b, c) = sum_j (log err_j - log(a N_j^(-b) + c))^2
               = W + sum_i n_i (ybar_i - log(a N_i^(-b) + c))^2,

with ybar_i the mean log error of the n_i runs at size N_i and W the within-size sum of squares.
The reported fit keeps a > 0, b in [0, B_MAX] and c in [0, c_max], c_max = exp(min_i ybar_i) the
smallest per-size (geometric-mean) error: an offset above every size's error is no offset.

Fit (no scipy): at fixed (b, c) the best log a follows by Gauss-Newton in one variable, so S is
searched on a (b, c) grid with log a profiled out and the best point polished by bounded
Levenberg-Marquardt on (log a, b, c). Fewer than three sizes: c = 0 and the line through the
mean log errors.

Confidence intervals (at least MIN_SEEDS seeds and MIN_SIZES sizes): the profile-likelihood
interval of each parameter p is {p0 : P(p0) <= thr}, with P(p0) the least S with p held at p0,

    thr = S_min (1 + t^2 / df),    t the two-sided ``level`` quantile of Student's t, df = runs - 3,

i.e. the F(1, df) likelihood-ratio test with sigma estimated (exact for a linear model; unlike a
Wald interval from the Jacobian it follows the curved valley in which b and c trade off). P is
evaluated on a fine (b, c) grid around the region {S <= thr} with log a profiled out: minima
along the other axis give b's and c's ends; a's ends are exact at the grid points (bisection
in log a) and then on the profile itself (Newton's method).

The intervals are computed with c free of sign, and c's interval is then clipped to
[0, c_max]: with c >= 0 imposed, a true c = 0 sits on the boundary, where the likelihood-ratio
test is conservative (up to about 99% coverage in simulation); free of sign, c is a regular
parameter. Each interval is widened, if need be, to hold the reported fit, which therefore
sits at an end of an interval when the data favour a negative offset. In simulated 3- and
5-seed studies (4 or 6 sizes in 8..512, lognormal noise 0.05-0.2) these intervals covered the
true a, b and c 93-97% of the time; a true c = 0 about 97%, as data that favour a negative
offset give c the interval [0, 0].

Fewer seeds or sizes: the thresholds are a policy, not where simulated coverage failed (under
the model it held with 1-2 seeds and 3 sizes too). They guard against what the model assumes:
with fewer than MIN_SEEDS seeds each size's spread rests on one or two runs (with one seed the
noise is only the misfit of the law), so departures from independent lognormal noise go
unseen; with fewer than MIN_SIZES sizes the law passes through the mean errors exactly, so
nothing checks its form. No interval is then called a confidence interval: with at least two
seeds ``ci`` holds the min-max of the pooled fit and each seed's own fit ("range"); with one
seed it is empty ("none").
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

LEVEL = 0.95
B_MAX = 4.0  # steepest exponent searched; b at this bound means a step, not a power law
MIN_SEEDS = 3  # fewer seeds: a range of per-seed fits, not a confidence interval
MIN_SIZES = 4  # fewer distinct N: as above (3 sizes fit the 3 parameters exactly)
FLOOR_SHARE = 0.9  # c at least this share of the fitted error at the largest N: a floor
COARSE = 48  # (b, c) grid points per axis for the global search
FINE = 64  # per axis on the grid around the confidence region
ALPHA_ITERS = 10  # Gauss-Newton steps for log a at fixed (b, c)
BISECT = 40  # doublings and halvings for an end of log a's interval at fixed (b, c)
CANDIDATES = 16  # grid points tried for each end of log a's interval

FITS_NOTE = (
    "err(N) = a N^(-b) + c is fitted per curve to all its runs by least squares in log error, "
    "with c between 0 and the smallest per-size error. With at least 3 seeds and 4 sizes the "
    "brackets are 95% profile-likelihood confidence intervals (F test on runs - 3 degrees of "
    "freedom, assuming independent lognormal noise per run; c is profiled free of sign, then "
    "clipped at 0). With fewer seeds or sizes they are only the range of the pooled and "
    "per-seed fits (interval 'range'; a single seed gets none), since so few runs cannot both "
    "measure the noise and check the law's shape."
)


@dataclass(frozen=True)
class PowerLawFit:
    """A fitted law err(N) = a N^(-b) + c with intervals.

    ``ci`` maps "a", "b", "c" to (low, high). ``interval`` says what they are: "95% CI" (a
    profile-likelihood confidence interval at the fit's level), "range" (min-max of the pooled
    and per-seed fits: too few seeds or sizes for a calibrated interval) or "none" (``ci``
    empty). ``method`` says how ``ci`` was made: "profile", "per-seed" or "none".
    ``c_at_bound``: c was not determined as an offset, the law being a floor: c at its upper
    bound c_max, or at least FLOOR_SHARE of the fitted error at the largest N, or b at B_MAX.
    """

    a: float
    b: float
    c: float
    ci: dict[str, tuple[float, float]] = field(default_factory=dict)
    method: str = "none"
    n_points: int = 0
    n_seeds: int = 0
    interval: str = "none"
    c_at_bound: bool = False

    @property
    def bootstrap(self) -> str:
        """Older name of ``method`` (nothing is resampled any more)."""
        return self.method

    def predict(self, n: np.ndarray | float) -> np.ndarray:
        """err(N) = a N^(-b) + c."""
        return self.a * np.asarray(n, dtype=float) ** (-self.b) + self.c


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


def _grid(s: Sizes, b_axis: np.ndarray, c_axis: np.ndarray):
    """S with log a profiled out on the grid b_axis x c_axis: (S, alpha, curvature)."""
    bb, cc = np.meshgrid(b_axis, c_axis, indexing="ij")
    alpha, curv = best_alpha(s, bb, cc)
    values = sse(s, alpha, bb, cc)
    return np.where(np.isfinite(values), values, np.inf), alpha, curv


def _jacobian(s: Sizes, theta: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
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
        r, jac = _jacobian(s, theta)
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
    values, alpha, _ = _grid(s, b_axis, c_axis)
    i, j = np.unravel_index(int(np.argmin(values)), values.shape)
    return polish(s, np.array([alpha[i, j], b_axis[i], c_axis[j]]), *bounds((0.0, s.c_max)))


def _crossings(axis: np.ndarray, prof: np.ndarray, thr: float) -> tuple[float, float]:
    """Ends of {p: prof(p) <= thr}, linearly interpolated between grid points (hull of the
    set; an end on the grid's first or last point stays there)."""
    inside = np.flatnonzero(prof <= thr)
    k0, k1 = int(inside[0]), int(inside[-1])

    def cross(k_in: int, k_out: int) -> float:
        f = (thr - prof[k_in]) / (prof[k_out] - prof[k_in])
        return float(axis[k_in] + f * (axis[k_out] - axis[k_in]))

    lo = axis[0] if k0 == 0 else cross(k0, k0 - 1)
    hi = axis[-1] if k1 == axis.size - 1 else cross(k1, k1 + 1)
    return float(lo), float(hi)


def _min_along(values: np.ndarray, axis: int) -> np.ndarray:
    """Minimum along one grid axis, refined by the parabola through the minimum and its
    neighbours (the valley of S between grid lines is lower than its grid points)."""
    v = np.moveaxis(values, axis, -1)
    best = np.argmin(v, axis=-1)
    k = np.clip(best, 1, v.shape[-1] - 2)
    rows = np.arange(v.shape[0])
    left, mid, right = v[rows, k - 1], v[rows, k], v[rows, k + 1]
    low = v.min(axis=-1)
    denom = left - 2 * mid + right
    with np.errstate(divide="ignore", invalid="ignore"):
        vertex = mid - (right - left) ** 2 / (8 * denom)
    ok = np.isfinite(vertex) & (denom > 0) & (best == k)  # a minimum on the edge stays as is
    return np.where(ok, np.clip(vertex, low - np.abs(denom), low), low)


def _zoom(box: tuple[float, float], hull: tuple[float, float], step: float, limits):
    """Next (lo, hi) of one box axis, or None when the box fits the region's hull: widened
    past a side the hull touches (unless that side is a search bound), else shrunk to the
    hull plus two grid steps when that is less than half the box."""
    (lo, hi), width = box, box[1] - box[0]
    touch_lo, touch_hi = hull[0] <= lo and lo > limits[0], hull[1] >= hi and hi < limits[1]
    if touch_lo or touch_hi:
        return (
            max(lo - width, limits[0]) if touch_lo else lo,
            min(hi + width, limits[1]) if touch_hi else hi,
        )
    new = max(hull[0] - 2 * step, limits[0]), min(hull[1] + 2 * step, limits[1])
    return new if new[1] - new[0] < width / 2 else None


def _around(center: float, half: float, limits: tuple[float, float]) -> tuple[float, float]:
    """[center - half, center + half] cut to ``limits``."""
    return max(center - half, limits[0]), min(center + half, limits[1])


def _quadratic_halves(s: Sizes, theta: np.ndarray, thr: float) -> np.ndarray:
    """Half-widths in (b, c) of {S <= thr} for the quadratic S ~ S_min + d'(J'NJ)d, times 1.5;
    (0.1, c_max / 20) where J'NJ is singular."""
    _, jac = _jacobian(s, theta)
    gap = thr - float(sse(s, *theta))
    with np.errstate(all="ignore"):
        try:
            var = np.diag(np.linalg.inv(jac.T @ (s.n[:, None] * jac)))[1:]
        except np.linalg.LinAlgError:
            var = np.full(2, np.nan)
        half = 1.5 * np.sqrt(gap * var)
    fallback = np.array([0.1, s.c_max / 20])
    return np.where(np.isfinite(half) & (half > 0), half, fallback)


def _region_grid(s: Sizes, theta: np.ndarray, thr: float):
    """A FINE x FINE (b, c) grid whose box holds {S <= thr} with grid steps to spare:
    (b_axis, c_axis, S, alpha, curvature). Starts from the quadratic approximation around the
    fit, widens past any side the region touches and zooms in while the region is much smaller
    than the box (the region is often a thin curved valley: b and c trade off)."""
    b_bounds, c_bounds = (0.0, B_MAX), s.c_free
    half = _quadratic_halves(s, theta, thr)
    b_box, c_box = _around(theta[1], half[0], b_bounds), _around(theta[2], half[1], c_bounds)
    for _ in range(16):
        b_axis, c_axis = np.linspace(*b_box, FINE), np.linspace(*c_box, FINE)
        values, alpha, curv = _grid(s, b_axis, c_axis)
        ib, ic = np.nonzero(values <= thr)
        if ib.size == 0:  # the region falls between grid points: zoom onto the fit
            b_box = _around(theta[1], (b_box[1] - b_box[0]) / 8, b_bounds)
            c_box = _around(theta[2], (c_box[1] - c_box[0]) / 8, c_bounds)
            continue
        nb = _zoom(b_box, (b_axis[ib.min()], b_axis[ib.max()]), b_axis[1] - b_axis[0], b_bounds)
        nc = _zoom(c_box, (c_axis[ic.min()], c_axis[ic.max()]), c_axis[1] - c_axis[0], c_bounds)
        if nb is None and nc is None:
            break
        b_box, c_box = nb or b_box, nc or c_box
    return b_axis, c_axis, values, alpha, curv


def _alpha_end(s: Sizes, alpha, b, c, start, thr: float, sign: float) -> np.ndarray:
    """The end (sign -1: lower, +1: upper) of {alpha: S(alpha, b, c) <= thr} at each fixed
    (b, c), from its inside point ``alpha`` (S <= thr there): a bracket grows from the step
    ``start`` by doubling until S > thr, then bisection. An end never reached is infinite:
    with c > 0 and sum_i n_i (ybar_i - log c)^2 small enough, a -> 0 still fits.
    """

    def outside(a: np.ndarray) -> np.ndarray:
        return ~(sse(s, a, b, c) <= thr)  # an undefined S (m <= 0) counts as outside

    with np.errstate(divide="ignore"):  # a negative c keeps alpha above log(-c) + b log N_max
        floor = np.where(c < 0, np.log(np.abs(c)) + b * s.x.max(), -np.inf)
    inner, step = alpha.copy(), start.copy()
    outer = np.maximum(alpha + sign * step, floor)
    for _ in range(BISECT):
        out = outside(outer)
        if out.all():
            break
        inner, step = np.where(out, inner, outer), np.where(out, step, 2 * step)
        outer = np.where(out, outer, np.maximum(alpha + sign * step, floor))
    bounded = outside(outer)
    for _ in range(BISECT):
        mid = (inner + outer) / 2
        out = outside(mid)
        inner, outer = np.where(out, inner, mid), np.where(out, mid, outer)
    return np.where(bounded, inner, sign * np.inf)


def _profile_end_alpha(s: Sizes, start: np.ndarray, fit: np.ndarray, thr: float, sign: float):
    """The end of log a's profile interval by Newton's method on P(alpha) = thr, where
    P(alpha) = min_{b, c} S at that alpha and dP/dalpha = -2 sum n w r there (envelope theorem);
    None unless it converges on the ``sign`` side of the fit."""
    theta = np.array(start, dtype=float)
    tol = 1e-6 * (thr - float(sse(s, *fit)))
    for _ in range(8):
        theta = polish(s, theta, *bounds(s.c_free, theta[0]), iters=30)
        r, jac = _jacobian(s, theta)
        gap = float(sse(s, *theta)) - thr
        if abs(gap) <= tol:
            return float(theta[0])
        slope = -2.0 * float((s.n * jac[:, 0] * r).sum())
        nxt = theta[0] - gap / slope if slope != 0 else np.nan
        if not np.isfinite(nxt) or sign * (nxt - fit[0]) <= 0:
            return None
        theta[0] = nxt
    return None


def _alpha_interval(s: Sizes, fit, thr: float, grid) -> tuple[float, float]:
    """log a's profile interval: the widest of the exact per-grid-point ends (each inside the
    interval), tried at the CANDIDATES points whose quadratic ends
    alpha* +- sqrt((thr - S*) / sum n w^2) reach furthest, then pushed out to the exact profile
    end where Newton's method on the profile converges."""
    b_axis, c_axis, values, alpha, curv = grid
    inside = values <= thr
    bb, cc = (v[inside] for v in np.meshgrid(b_axis, c_axis, indexing="ij"))
    alpha, half = alpha[inside], np.sqrt((thr - values[inside]) / np.maximum(curv[inside], 1e-300))
    out = []
    for sign in (-1.0, 1.0):
        pick = np.argsort(-sign * (alpha + sign * half))[:CANDIDATES]
        start = np.clip(half[pick], 1e-3, 1.0)
        end = _alpha_end(s, alpha[pick], bb[pick], cc[pick], start, thr, sign)
        k = int(np.argmax(sign * end))
        best = np.array([end[k], bb[pick][k], cc[pick][k]])
        exact = _profile_end_alpha(s, best, fit, thr, sign) if np.isfinite(end[k]) else None
        out.append(end[k] if exact is None else sign * max(sign * end[k], sign * exact))
    return out[0], out[1]


def profile_intervals(s: Sizes, fit: np.ndarray, thr: float) -> dict[str, tuple[float, float]]:
    """Profile-likelihood intervals {p0: P(p0) <= thr} of a, b and c around the least-squares
    ``fit`` with c free of sign (within ``Sizes.c_free``).

    On a fine (b, c) grid around the region {S <= thr}, the profiles of b and c are minima of S
    along the other axis; log a's is in :func:`_alpha_interval`. A region narrower than the
    grid's spacing gives the fit itself.
    """
    grid = _region_grid(s, fit, thr)
    b_axis, c_axis, values = grid[:3]
    if not (values <= thr).any():
        return {k: (float(v), float(v)) for k, v in zip("abc", _as_abc(fit)[0], strict=True)}
    lo, hi = _alpha_interval(s, fit, thr, grid)
    return {
        "a": (float(np.exp(lo)), float(np.exp(hi))),
        "b": _crossings(b_axis, _min_along(values, 1), thr),
        "c": _crossings(c_axis, _min_along(values, 0), thr),
    }


def confidence_intervals(
    s: Sizes, theta: np.ndarray, level: float
) -> dict[str, tuple[float, float]]:
    """``level`` profile-likelihood intervals for the reported fit ``theta`` (c >= 0): the
    least-squares fit with c free of sign sets S_min and the threshold
    thr = S_min (1 + t^2 / df); c's interval is then clipped to [0, c_max] and each interval
    widened, if need be, to hold ``theta``."""
    free = polish(s, theta, *bounds(s.c_free))
    df = s.runs - 3
    t = t_quantile(level, df)
    thr = float(sse(s, *free)) * (1 + t * t / df)
    ci = profile_intervals(s, free, thr)
    lo, hi = ci["c"]
    ci["c"] = (min(max(lo, 0.0), s.c_max), min(max(hi, 0.0), s.c_max))
    return {
        k: (min(ci[k][0], v), max(ci[k][1], v))
        for k, v in zip("abc", _as_abc(theta)[0], strict=True)
    }


def _clean(n, err, seeds) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Drop runs whose N or error is not positive and finite (log would be undefined)."""
    n, err = np.asarray(n, dtype=float), np.asarray(err, dtype=float)
    seeds = np.zeros(n.size, dtype=int) if seeds is None else np.asarray(seeds)
    ok = np.isfinite(n) & np.isfinite(err) & (n > 0) & (err > 0)
    return n[ok], err[ok], seeds[ok]


def _as_abc(theta: np.ndarray) -> np.ndarray:
    """(alpha, b, c) rows to (a, b, c) rows."""
    out = np.array(theta, dtype=float, ndmin=2)
    out[:, 0] = np.exp(out[:, 0])
    return out


def per_seed_range(n, err, seeds, theta: np.ndarray) -> dict[str, tuple[float, float]]:
    """Min-max of each parameter over the pooled fit ``theta`` and the fits of each seed's runs
    alone; empty unless at least two seeds span two sizes or more (a seed with one size has no
    fit of its own)."""
    own = [fit_sizes(summarise(n[seeds == k], err[seeds == k])) for k in np.unique(seeds)]
    own = [f for f in own if np.isfinite(f).all()]
    if len(own) < 2:
        return {}
    abc = _as_abc(np.array([theta, *own]))
    return {k: (float(abc[:, i].min()), float(abc[:, i].max())) for i, k in enumerate("abc")}


def c_at_bound(s: Sizes, theta: np.ndarray) -> bool:
    """Whether c is a floor rather than a fitted offset: c at c_max, or
    c >= FLOOR_SHARE (a N_max^(-b) + c) (the power law has died out by the largest N), or b at
    B_MAX (a step). Never with fewer than three sizes (c = 0 there)."""
    if s.x.size < 3:
        return False
    top = float(np.exp(theta[0] - theta[1] * s.x.max())) + theta[2]
    at_edge = theta[2] >= s.c_max * (1 - 1e-9) or theta[1] >= B_MAX * (1 - 1e-9)
    return bool(at_edge or theta[2] >= FLOOR_SHARE * top)


def _intervals(n, err, seeds, s: Sizes, theta: np.ndarray, level: float):
    """(ci, method, interval) by the rule of the module doc: profile CIs with enough seeds and
    sizes, else the per-seed range with two seeds or more, else nothing."""
    n_seeds = np.unique(seeds).size
    if n_seeds >= MIN_SEEDS and s.x.size >= MIN_SIZES:
        return confidence_intervals(s, theta, level), "profile", f"{100 * level:g}% CI"
    ci = per_seed_range(n, err, seeds, theta) if n_seeds >= 2 else {}
    return (ci, "per-seed", "range") if ci else ({}, "none", "none")


def fit_power_law(n, err, seeds=None, level: float = LEVEL) -> PowerLawFit:
    """Fit err(N) = a N^(-b) + c to runs (N_i, err_i) by least squares in log error.

    ``seeds`` labels each run. With at least MIN_SEEDS seeds and MIN_SIZES distinct N, ``ci``
    holds ``level`` profile-likelihood confidence intervals (see the module doc); with fewer,
    but two seeds or more, the min-max of the pooled and per-seed fits, marked "range"; with
    one seed, nothing. NaNs with fewer than two sizes. Deterministic.
    """
    n, err, seeds = _clean(n, err, seeds)
    n_seeds, runs = int(np.unique(seeds).size), int(n.size)
    if runs == 0:
        return PowerLawFit(np.nan, np.nan, np.nan, {}, "none", 0, n_seeds, "none", False)
    s = summarise(n, err)
    # trial points far from the fit may overflow; they give a NaN or infinite S and are refused
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        theta = fit_sizes(s)
        a, b, c = (float(v) for v in _as_abc(theta)[0])
        if not np.isfinite(theta).all():
            return PowerLawFit(a, b, c, {}, "none", runs, n_seeds, "none", False)
        ci, method, interval = _intervals(n, err, seeds, s, theta, level)
        floor = c_at_bound(s, theta)
    return PowerLawFit(a, b, c, ci, method, runs, n_seeds, interval, floor)
