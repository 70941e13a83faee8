"""pdefm.report.fits: least-squares fit, calibrated 95% intervals, ranges, the floor flag."""

from __future__ import annotations

import numpy as np
import pytest

from pdefm.report.fits import FITS_NOTE, fit_power_law, t_quantile

CURVES = 300  # per setting: a coverage of 0.95 is then measured to about +-0.013 (1 sd)

# name: (sizes N, seeds, a, b, c as a share of the smallest error, sigma of the log noise)
SETTINGS = {
    "4 sizes, 3 seeds, c = err_min / 3": ([8, 32, 128, 512], 3, 1.0, 0.5, 1 / 3, 0.10),
    "6 sizes, 5 seeds, c = err_min / 20": ([8, 16, 32, 64, 128, 256], 5, 1.5, 0.6, 0.05, 0.15),
}


def simulate(sizes, seeds, a, b, c_share, sigma, curves, rng):
    """Runs of ``curves`` studies of err = (a N^-b + c) exp(sigma z), z ~ N(0, 1) per run.

    c is set so that c = c_share * (a N_max^-b + c); returns (N, errors (curves, runs), seed
    labels, {"a", "b", "c"} truth).
    """
    sizes = np.asarray(sizes, dtype=float)
    c = c_share * a * sizes.max() ** -b / (1 - c_share)
    n = np.tile(sizes, seeds)
    labels = np.repeat(np.arange(seeds), sizes.size)
    errs = (a * n**-b + c) * np.exp(sigma * rng.standard_normal((curves, n.size)))
    return n, errs, labels, {"a": a, "b": b, "c": c}


@pytest.fixture(scope="module", params=list(SETTINGS))
def study(request):
    """(truth, fits) of CURVES simulated curves of one setting (fixed numpy seed)."""
    sizes, seeds, a, b, c_share, sigma = SETTINGS[request.param]
    rng = np.random.default_rng(20240601)
    n, errs, labels, truth = simulate(sizes, seeds, a, b, c_share, sigma, CURVES, rng)
    return truth, [fit_power_law(n, e, labels) for e in errs]


def coverage(truth, fits, scale: float = 1.0, about: str = "estimate") -> dict[str, float]:
    """Share of intervals holding the truth, each side scaled by ``scale`` about the estimate
    or the interval's middle (in log a for a; c kept >= 0): scale 1 is the interval itself."""
    out = {}
    for k in "abc":
        hits = 0
        for f in fits:
            (lo, hi), v, t = f.ci[k], getattr(f, k), truth[k]
            if k == "a":
                lo, hi, v, t = np.log(lo), np.log(hi), np.log(v), np.log(t)
            m = v if about == "estimate" else (lo + hi) / 2
            lo, hi = m - scale * (m - lo), m + scale * (hi - m)
            if k == "c":
                lo = max(lo, 0.0)
            hits += lo <= t <= hi
        out[k] = hits / len(fits)
    return out


def test_95_intervals_cover_the_truth_90_to_98_percent(study):
    truth, fits = study
    assert {f.interval for f in fits} == {"95% CI"}
    cov = coverage(truth, fits)
    assert all(0.90 <= cov[k] <= 0.98 for k in "abc"), cov


def test_coverage_check_catches_too_narrow_and_too_wide_intervals(study):
    # the band must reject wrong intervals on the same curves, or the check above proves
    # nothing: halved about the estimate (overconfident, as a seed bootstrap with 3-5 seeds
    # was) they cover too rarely; 2.5-fold about the middle, too often. c is left out of the
    # wide check: data that favour a negative offset give c the interval [0, 0], whatever scale
    truth, fits = study
    narrow, wide = coverage(truth, fits, 0.5), coverage(truth, fits, 2.5, about="middle")
    assert all(narrow[k] < 0.90 for k in "abc"), narrow
    assert wide["a"] > 0.98 and wide["b"] > 0.98, wide


# Sampled pre-training: seed s fine-tunes pre-trained model s mod P, whose effect (an offset
# in log error, at every N) all its runs share.
# name: (sizes N, seeds, pre-trained models, sigma of the per-run noise, tau of the model's)
SAMPLED = {
    "4 sizes, 6 seeds on 3 models, tau = sigma = 0.1": ([8, 32, 128, 512], 6, 3, 0.1, 0.1),
    "4 sizes, 6 seeds on 3 models, tau = 0.3, sigma = 0.05": ([8, 32, 128, 512], 6, 3, 0.05, 0.3),
}


def simulate_sampled(sizes, seeds, models, sigma, tau, curves, rng):
    """Runs of err = (N^-0.5 + c) exp(tau u_p + sigma z): u_p ~ N(0, 1) per pre-trained model
    p = seed mod models, shared by its runs at every N, z ~ N(0, 1) per run; c a third of the
    error at the largest N. Returns (N, errors (curves, runs), seeds, models, truth)."""
    n, law, labels, truth = simulate(sizes, seeds, 1.0, 0.5, 1 / 3, 0.0, 1, rng)
    pretrained = labels % models
    shared = rng.standard_normal((curves, models))[:, pretrained]
    errs = law[0] * np.exp(tau * shared + sigma * rng.standard_normal((curves, n.size)))
    return n, errs, labels, pretrained, truth


@pytest.fixture(scope="module", params=list(SAMPLED))
def sampled(request):
    """(truth, fits) of CURVES simulated curves of one SAMPLED setting (fixed numpy seed)."""
    rng = np.random.default_rng(20240601)
    n, errs, labels, pretrained, truth = simulate_sampled(*SAMPLED[request.param], CURVES, rng)
    return truth, [fit_power_law(n, e, labels, pretrained=pretrained) for e in errs]


def test_sampled_pretraining_intervals_cover_the_truth_90_to_98_percent(sampled):
    # the truth is the law over pre-training draws: E[u] = 0
    truth, fits = sampled
    assert {f.interval for f in fits} == {"95% CI"} and {f.n_pretrained for f in fits} == {3}
    cov = coverage(truth, fits)
    assert all(0.90 <= cov[k] <= 0.98 for k in "abc"), cov


def test_treating_shared_pretraining_as_independent_runs_misses_the_band():
    # the check above can fail: the same curves fitted as if every run were independent take
    # the models' spread for noise, and b (which an offset leaves alone) and c get intervals
    # far too wide once tau dominates (with 2 models a covers too rarely, see fits.py)
    rng = np.random.default_rng(20240601)
    setting = SAMPLED["4 sizes, 6 seeds on 3 models, tau = 0.3, sigma = 0.05"]
    n, errs, labels, _, truth = simulate_sampled(*setting, CURVES, rng)
    naive = coverage(truth, [fit_power_law(n, e, labels) for e in errs[: CURVES // 2]])
    assert naive["b"] > 0.98 and naive["c"] > 0.98, naive


def test_fewer_than_three_pretrained_models_give_a_range():
    rng = np.random.default_rng(3)
    n, errs, labels, pretrained, _ = simulate_sampled([8, 32, 128, 512], 6, 2, 0.1, 0.1, 1, rng)
    assert fit_power_law(n, errs[0], labels).interval == "95% CI"  # 6 seeds, yet 2 models
    fit = fit_power_law(n, errs[0], labels, pretrained=pretrained)
    assert fit.interval == "range" and fit.n_pretrained == 2 and fit.n_seeds == 6


def test_one_pretrained_model_keeps_the_seed_intervals():
    # a stage of one seed: every run starts from the same model, intervals are for it
    rng = np.random.default_rng(4)
    n, errs, labels, _ = simulate([8, 32, 128, 512], 3, 1.0, 0.5, 0.2, 0.1, 1, rng)
    plain = fit_power_law(n, errs[0], labels)
    one = fit_power_law(n, errs[0], labels, pretrained=np.zeros(n.size, dtype=int))
    assert one.ci == plain.ci and one.interval == "95% CI" and one.n_pretrained == 1


def test_fewer_than_three_seeds_gives_a_range_never_a_ci():
    rng = np.random.default_rng(1)
    n, errs, labels, _ = simulate([8, 16, 32, 64, 128, 256], 2, 1.0, 0.5, 0.2, 0.1, 1, rng)
    fit = fit_power_law(n, errs[0], labels)
    assert fit.interval == "range" and fit.method == "per-seed" and fit.n_seeds == 2
    for k in "abc":
        lo, hi = fit.ci[k]
        assert lo <= getattr(fit, k) <= hi


def test_three_sizes_give_a_range_even_with_three_seeds():
    rng = np.random.default_rng(2)
    n, errs, labels, _ = simulate([8, 64, 512], 3, 1.0, 0.5, 0.2, 0.1, 1, rng)
    assert fit_power_law(n, errs[0], labels).interval == "range"


def test_one_seed_one_run_per_size_has_no_interval():
    n = np.array([8, 16, 32, 64, 128.0])
    fit = fit_power_law(n, 2.0 * n**-0.5 * np.exp(0.05 * np.sin(n)))
    assert fit.interval == "none" and fit.ci == {} and fit.method == "none"
    assert fit.bootstrap == fit.method and fit.n_points == 5 and fit.n_seeds == 1


@pytest.mark.parametrize("c", [0.0, 0.03])
def test_noiseless_law_is_recovered(c):
    n = np.tile([8.0, 16, 32, 64, 128, 256], 3)
    fit = fit_power_law(n, 2.0 * n**-0.6 + c, np.repeat([0, 1, 2], 6))
    assert fit.a == pytest.approx(2.0, rel=1e-6) and fit.b == pytest.approx(0.6, rel=1e-6)
    assert fit.c == pytest.approx(c, abs=1e-9)
    assert fit.interval == "95% CI" and not fit.c_at_bound
    for k, truth in (("a", 2.0), ("b", 0.6), ("c", c)):
        lo, hi = fit.ci[k]
        assert lo == pytest.approx(truth, abs=1e-6) and hi == pytest.approx(truth, abs=1e-6)


def test_c_at_bound_flags_a_floor_not_a_clean_law():
    n = np.array([8, 16, 32, 64, 128.0])
    assert fit_power_law(n, [0.5, 0.2, 0.1, 0.1, 0.1]).c_at_bound
    clean = fit_power_law(n, 1.0 * n**-0.5 + 0.03)
    assert clean.c == pytest.approx(0.03, rel=1e-6) and not clean.c_at_bound


def test_t_quantile_matches_tables():
    for df, t in ((1, 12.706), (2, 4.303), (9, 2.262), (30, 2.042)):
        assert t_quantile(0.95, df) == pytest.approx(t, abs=1e-3)
    assert t_quantile(0.99, 5) == pytest.approx(4.032, abs=1e-3)


def test_fits_note_names_the_method_and_the_range_rule():
    assert "95% profile-likelihood confidence intervals" in FITS_NOTE
    assert "range" in FITS_NOTE and "3 seeds and 4 sizes" in FITS_NOTE
