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

Sampled pre-training (``pretrained``: each run's pre-training seed, from two or more
pre-trained models): runs fine-tuned from one model share its effect, so they are not
independent draws. Model: that effect is an offset u_g ~ N(0, tau^2) in log error, the same
at every N, for the runs of model g (a stage's downstream seed s uses pre-training seed
P[s mod len(P)], so the runs of seeds s, s + P, ... share u). A common offset d maps
(a, b, c) to (a e^d, b, c e^d) exactly (and the fit with it), so:

- the F test uses only the scatter within models: S minus the between-model sum of squares
  SS_b of the size-centred log errors, on runs - 3 - (G - 1) degrees of freedom (G models);
  b's interval is this profile interval (an offset does not move b);
- log a and log c also carry the level the G models share: variance tau^2 sum n_g^2 / runs^2,
  tau^2 estimated by moments from SS_b; each end of their intervals is widened to
  t_df' sqrt(v + that), v the end's within-model variance (its half-width over t) and df'
  the Welch-Satterthwaite degrees of freedom of the sum (G - 1 for the shared part);
- the gate counts models, not seeds: fewer than MIN_SEEDS models gives the per-seed range.

With one model (a stage of one seed) the intervals are those above, for that pre-trained
model: its own effect is neither sampled nor included. In simulated studies (4 or 6 sizes,
3-6 models, 4-6 seeds, tau 0 to 0.3, sigma 0.05-0.15, groups of unequal size included) these
intervals covered 93-97%; ignoring the models, with 6 seeds on 2 models a covered 83%, and
with tau = 0.3 b and c covered 100%.

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

from dataclasses import dataclass, field

import numpy as np

from pdefm.report.fit_core import (
    B_MAX,
    Groups,
    Sizes,
    as_abc,
    fit_sizes,
    group_summary,
    summarise,
    t_quantile,  # noqa: F401 (re-exported)
)
from pdefm.report.fit_intervals import confidence_intervals

LEVEL = 0.95


MIN_SEEDS = 3  # fewer seeds: a range of per-seed fits, not a confidence interval


MIN_SIZES = 4  # fewer distinct N: as above (3 sizes fit the 3 parameters exactly)


FLOOR_SHARE = 0.9  # c at least this share of the fitted error at the largest N: a floor


FITS_NOTE = (
    "err(N) = a N^(-b) + c is fitted per curve to all its runs by least squares in log error, "
    "with c between 0 and the smallest per-size error. With at least 3 seeds and 4 sizes the "
    "brackets are 95% profile-likelihood confidence intervals (F test on runs - 3 degrees of "
    "freedom, assuming independent lognormal noise per run; c is profiled free of sign, then "
    "clipped at 0). With fewer seeds or sizes they are only the range of the pooled and "
    "per-seed fits (interval 'range'; a single seed gets none), since so few runs cannot both "
    "measure the noise and check the law's shape. Fine-tune curves from a stage with several "
    "pre-training seeds count pre-trained models instead of seeds (at least 3 for an "
    "interval) and include the spread between the models in a's and c's intervals."
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
    n_pretrained: int = 0  # distinct pre-trained models behind the runs (0: none given)

    @property
    def bootstrap(self) -> str:
        """Older name of ``method`` (nothing is resampled any more)."""
        return self.method

    def predict(self, n: np.ndarray | float) -> np.ndarray:
        """err(N) = a N^(-b) + c."""
        return self.a * np.asarray(n, dtype=float) ** (-self.b) + self.c


def _clean(n, err, seeds, pretrained=None):
    """(N, err, seeds, pretrained) without the runs whose N or error is not positive and
    finite (log would be undefined); ``pretrained`` stays None when not given."""
    n, err = np.asarray(n, dtype=float), np.asarray(err, dtype=float)
    seeds = np.zeros(n.size, dtype=int) if seeds is None else np.asarray(seeds)
    ok = np.isfinite(n) & np.isfinite(err) & (n > 0) & (err > 0)
    kept = None if pretrained is None else np.asarray(pretrained)[ok]
    return n[ok], err[ok], seeds[ok], kept


def per_seed_range(n, err, seeds, theta: np.ndarray) -> dict[str, tuple[float, float]]:
    """Min-max of each parameter over the pooled fit ``theta`` and the fits of each seed's runs
    alone; empty unless at least two seeds span two sizes or more (a seed with one size has no
    fit of its own)."""
    own = [fit_sizes(summarise(n[seeds == k], err[seeds == k])) for k in np.unique(seeds)]
    own = [f for f in own if np.isfinite(f).all()]
    if len(own) < 2:
        return {}
    abc = as_abc(np.array([theta, *own]))
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


def _intervals(n, err, seeds, groups: Groups | None, s: Sizes, theta: np.ndarray, level):
    """(ci, method, interval) by the rule of the module doc: profile CIs with enough seeds
    (enough pre-trained models when the runs come from several) and sizes, else the per-seed
    range with two seeds or more, else nothing."""
    n_seeds = np.unique(seeds).size
    units = n_seeds if groups is None else groups.count  # the independent draws
    spare = groups is None or s.runs - 3 - (groups.count - 1) >= 1  # df of the within test
    if units >= MIN_SEEDS and s.x.size >= MIN_SIZES and spare:
        return confidence_intervals(s, theta, level, groups), "profile", f"{100 * level:g}% CI"
    ci = per_seed_range(n, err, seeds, theta) if n_seeds >= 2 else {}
    return (ci, "per-seed", "range") if ci else ({}, "none", "none")


def _groups(n, err, pretrained) -> Groups | None:
    """The runs' pre-trained models as ``Groups``; None unless there are two or more (one
    shared model is a fixed starting point: intervals are then for that model)."""
    if pretrained is None or np.unique(pretrained).size < 2:
        return None
    return group_summary(n, err, pretrained)


def fit_power_law(n, err, seeds=None, level: float = LEVEL, *, pretrained=None) -> PowerLawFit:
    """Fit err(N) = a N^(-b) + c to runs (N_i, err_i) by least squares in log error.

    ``seeds`` labels each run. With at least MIN_SEEDS seeds and MIN_SIZES distinct N, ``ci``
    holds ``level`` profile-likelihood confidence intervals (see the module doc); with fewer,
    but two seeds or more, the min-max of the pooled and per-seed fits, marked "range"; with
    one seed, nothing. NaNs with fewer than two sizes. Deterministic.

    ``pretrained`` labels each run with the pre-trained model it started from (its
    pre-training seed; None: scratch, or not known). Runs from two or more models share
    their model's effect: the intervals then count the models, not the seeds, as the
    independent draws and include the spread between them (module doc).
    """
    n, err, seeds, pretrained = _clean(n, err, seeds, pretrained)
    n_seeds, runs = int(np.unique(seeds).size), int(n.size)
    models = 0 if pretrained is None else int(np.unique(pretrained).size)
    if runs == 0:
        return PowerLawFit(np.nan, np.nan, np.nan, {}, "none", 0, n_seeds, "none", False, models)
    s = summarise(n, err)
    # trial points far from the fit may overflow; they give a NaN or infinite S and are refused
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        theta = fit_sizes(s)
        a, b, c = (float(v) for v in as_abc(theta)[0])
        if not np.isfinite(theta).all():
            return PowerLawFit(a, b, c, {}, "none", runs, n_seeds, "none", False, models)
        groups = _groups(n, err, pretrained)
        ci, method, interval = _intervals(n, err, seeds, groups, s, theta, level)
        floor = c_at_bound(s, theta)
    return PowerLawFit(a, b, c, ci, method, runs, n_seeds, interval, floor, models)
