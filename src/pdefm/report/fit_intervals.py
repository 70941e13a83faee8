"""Profile-likelihood intervals of a fitted power law: for each of a, b and c the range over
which the profiled sum of squares stays under the F threshold, found on a refined grid of the
confidence region (see ``pdefm.report.fits``)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from pdefm.report.fit_core import (
    B_MAX,
    FINE,
    Groups,
    Sizes,
    as_abc,
    bounds,
    jacobian,
    model_grid,
    polish,
    sse,
    t_quantile,
)

CANDIDATES = 16  # grid points tried for each end of log a's interval


BISECT = 40  # doublings and halvings for an end of log a's interval at fixed (b, c)


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
    _, jac = jacobian(s, theta)
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
        values, alpha, curv = model_grid(s, b_axis, c_axis)
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
        r, jac = jacobian(s, theta)
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
        return {k: (float(v), float(v)) for k, v in zip("abc", as_abc(fit)[0], strict=True)}
    lo, hi = _alpha_interval(s, fit, thr, grid)
    return {
        "a": (float(np.exp(lo)), float(np.exp(hi))),
        "b": _crossings(b_axis, _min_along(values, 1), thr),
        "c": _crossings(c_axis, _min_along(values, 0), thr),
    }


def confidence_intervals(
    s: Sizes, theta: np.ndarray, level: float, groups: Groups | None = None
) -> dict[str, tuple[float, float]]:
    """``level`` profile-likelihood intervals for the reported fit ``theta`` (c >= 0): the
    least-squares fit with c free of sign sets S_min and the threshold
    thr = S_min (1 + t^2 / df); c's interval is then clipped to [0, c_max] and each interval
    widened, if need be, to hold ``theta``.

    ``groups`` (runs sharing pre-trained models, at least two): the threshold tests only the
    scatter within groups and a and c take in the variance of the groups' shared effects
    (see ``pdefm.report.fits``)."""
    free = polish(s, theta, *bounds(s.c_free))
    s_min = float(sse(s, *free))
    if groups is None:
        df = s.runs - 3
        t = t_quantile(level, df)
        thr = s_min * (1 + t * t / df)
    else:
        thr, df, t = within_threshold(s_min, s.runs, level, groups)
    ci = profile_intervals(s, free, thr)
    lo, hi = ci["c"]
    ci["c"] = (min(max(lo, 0.0), s.c_max), min(max(hi, 0.0), s.c_max))
    if groups is not None:
        sigma2 = max(s_min - groups.between, 0.0) / df  # the scatter within groups
        extra = level_variance(groups, sigma2, s.runs)
        ci = with_pretraining(ci, theta, Widening(extra, df, t, groups.count - 1, level))
    return {
        k: (min(ci[k][0], v), max(ci[k][1], v))
        for k, v in zip("abc", as_abc(theta)[0], strict=True)
    }


def within_threshold(s_min: float, runs: int, level: float, groups: Groups):
    """(thr, df, t) of the F test on the scatter of runs within their groups: S minus the
    between-group SS_b, on runs - 3 - (G - 1) degrees of freedom. An offset per pre-trained
    model is taken out as if fixed, so its spread does not count as noise (b, which a common
    offset leaves alone, then gets the interval its runs' own noise warrants)."""
    df = runs - 3 - (groups.count - 1)
    t = t_quantile(level, df)
    within = max(s_min - groups.between, 0.0)
    return groups.between + within * (1 + t * t / df), df, t


def level_variance(groups: Groups, sigma2: float, runs: int) -> float:
    """Variance the shared pre-training effects add to the fitted level (log a and log c move
    together by it): tau^2 sum_g n_g^2 / runs^2, tau^2 by moments from
    E[SS_b] = (G - 1) sigma^2 + tau^2 (runs - sum_g n_g^2 / runs), floored at 0."""
    spread = runs - groups.sum_sq / runs
    if spread <= 0:
        return 0.0
    tau2 = max(0.0, (groups.between - (groups.count - 1) * sigma2) / spread)
    return tau2 * groups.sum_sq / runs**2


@dataclass(frozen=True)
class Widening:
    """How to widen a within-group interval by the level variance ``extra``: the interval's
    t quantile ``t`` on ``df``, the groups' ``group_df`` (G - 1) and the ``level``."""

    extra: float
    df: int
    t: float
    group_df: int
    level: float

    def half(self, half: float) -> float:
        """The half-width of an end ``half`` from the estimate once the level variance is
        added: t on the Welch-Satterthwaite df of the sum of the two variances, the
        within-group one read back from ``half`` (= t sqrt(v))."""
        if self.extra <= 0 or not np.isfinite(half):
            return half
        v = (max(half, 0.0) / self.t) ** 2
        total = v + self.extra
        df = total**2 / (v**2 / self.df + self.extra**2 / self.group_df)
        return t_quantile(self.level, max(1, int(df))) * float(np.sqrt(total))


def with_pretraining(ci: dict, theta: np.ndarray, widen: Widening) -> dict:
    """a's and c's intervals widened in log space by the level the pre-training effects
    share (a common offset d in log error maps (a, b, c) to (a e^d, b, c e^d)); b's is
    kept. A lower end of c at 0 stays there; a fit with c = 0 widens c's upper end by the
    level's own half-width."""
    a, _, c = as_abc(theta)[0]
    with np.errstate(divide="ignore"):
        lo, hi = np.log(ci["a"][0]), np.log(ci["a"][1])
        la = float(np.log(a))
        out = dict(ci)
        out["a"] = (
            float(np.exp(la - widen.half(la - lo))),
            float(np.exp(la + widen.half(hi - la))),
        )
        c_lo, c_hi = ci["c"]
        if c > 0:
            low = c * np.exp(-widen.half(np.log(c / c_lo))) if c_lo > 0 else 0.0
            high = c * np.exp(widen.half(np.log(c_hi / c))) if c_hi > 0 else 0.0
        else:
            low, high = 0.0, c_hi * np.exp(widen.half(0.0))
    out["c"] = (float(low), float(high))
    return out
