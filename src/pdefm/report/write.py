"""write_report: results table -> report.md, report.html, results.csv and the figures."""

from __future__ import annotations

import math
from pathlib import Path

from pdefm.checks import check_output_dir
from pdefm.report import figures, mixed
from pdefm.report.analysis import fits_by_curve, savings_by_curve
from pdefm.report.compute import compute_blocks
from pdefm.report.fits import FITS_NOTE, PowerLawFit
from pdefm.report.headline import headline_from_curves, zero_shot_of
from pdefm.report.names import method_label, row_task_title
from pdefm.report.render import to_html, to_markdown
from pdefm.report.savings import format_savings
from pdefm.report.savings_check import check_savings, doubled_runs
from pdefm.report.setup import flags_blocks, setup_blocks
from pdefm.report.table import (
    build_curves,
    by_task,
    failed_rows,
    summary_rows,
    usable_rows,
    validate_rows,
    write_csv,
)
from pdefm.study.row import ResultRow

SAVINGS_NOTE = (
    "Savings = N_scratch(target) / N_finetune(target) for each fine-tune curve against the "
    "scratch curve of the same model. Targets are the mean errors scratch reaches at its own "
    "sizes. N(target) interpolates log N linearly in log error along the curve made monotone "
    "(running minimum over N). '> x': scratch never reaches the target by its largest N, or "
    "fine-tuning already reaches it at its smallest N; '< x': the reverse. A note that a "
    "curve was still improving at the sizes around its crossing (budget-limited runs) means "
    "more budget would move that crossing to fewer examples: for scratch the saving would "
    "shrink, for fine-tuning it would grow. The savings check (`pdefm study run FILE "
    "--check-savings`) reruns the runs each factor rests on with twice the budget: S(2B) is "
    "the factor then; it is settled when it moved by at most 15% (or its paired-seed "
    "interval) and stayed on the same side of 1, and is otherwise printed as the range "
    "[S(B), S(2B)] with the words budget-bound; an unchecked factor is not yet settled."
)
FLOOR_NOTE = (
    "'floor at its bound': the fitted offset c takes up (nearly) all of the error at the "
    "largest N, or the exponent b hit its limit: the curve has flattened within the sizes "
    "run and a, b describe only its first points."
)
SHIFT_NOTE = (
    "Shift = |midpoint of the task range - midpoint of the pre-training range| / width of the "
    "pre-training range (0: same centre; 1: one pre-training width away)."
)


def _n_text(n: float, found: str) -> str:
    """N with how it was found: '181', '<= 8' (reached at the smallest size), '> 512'."""
    prefix = {"exact": "", "at_most": "<= ", "not_reached": "> "}[found]
    return f"{prefix}{n:.4g}"


def _names(curve) -> list[str]:
    """A curve's task and method in words: "Poisson, e in [5, 10]", "fine-tuned from ..."."""
    row = curve.rows[0] if curve.rows else None
    task = row_task_title(row) if row else curve.key.task
    return [task, method_label(curve.key, row, with_model=False)]


def _target_note(target: float, zero_shot: float | None) -> str:
    """Why a savings factor at this target says little: predicting zero or the pre-trained
    model used as is (zero-shot, no downstream example) already does as well."""
    if target >= 1:
        return "above 100%: predicting zero does as well"
    if zero_shot is not None and target >= zero_shot:
        return f"zero-shot already reaches it ({zero_shot:.4g})"
    return ""


def _savings_rows(savings, curves) -> list[list[str]]:
    """Rows of the savings table (``_checked`` entries): each factor as the savings check lets
    it be printed (one number only when settled), S at twice the budget, drift and verdict."""
    out, tasks = [], by_task(curves)
    for ft, sc, res in savings:
        zero_shot = zero_shot_of(tasks[ft.key.task], ft.key)
        for r in res:
            check = r["check"]
            n_s = _n_text(r["n_scratch"], r["scratch_found"])
            n_f = _n_text(r["n_finetune"], r["finetune_found"])
            target = f"{r['target']:.4g}"
            notes = [
                _target_note(r["target"], zero_shot),
                _budget_note(sc, r["n_scratch"], "scratch"),
                _budget_note(ft, r["n_finetune"], "fine-tuning"),
            ]
            note = "; ".join(n for n in notes if n)
            row = [*_names(ft), ft.key.model, target, n_s, n_f, check.text()]
            out.append(row + _check_cells(check) + [note])
    return out


def _checked(savings, doubled) -> list:
    """``savings_by_curve`` entries with each factor's savings check (``check``), computed
    once for the table and the figure, and its verdict and S(2B) for the figure."""
    out = []
    for ft, sc, res in savings:
        checks = check_savings(ft, sc, doubled)
        res = [
            {
                **r,
                "check": c,
                "verdict": c.verdict,
                "savings_2b": c.doubled and c.doubled["savings"],
            }  # fmt: skip
            for r, c in zip(res, checks, strict=True)
        ]
        out.append((ft, sc, res))
    return out


def _check_cells(check) -> list[str]:
    """S(2B), drift and verdict cells of a savings row."""
    if check.doubled is None:
        return ["-", "-", check.verdict]
    d = check.doubled
    drift = "-" if math.isnan(check.drift) else f"{check.drift:+.0%}"
    return [format_savings(d["savings"], d["relation"]), drift, check.verdict]


def _budget_note(curve, n: float, who: str) -> str:
    """'scratch still improving at N = 2048 (3 of 3 runs)' when runs of ``curve`` at the
    sizes around its crossing ``n`` (the nearest size at or below it and at or above it; the
    smallest or largest size when the crossing lies outside them) were budget-limited."""
    sizes = sorted(curve.errors)
    if not sizes or not math.isfinite(n):
        return ""
    below = [s for s in sizes if s <= n] or sizes[:1]
    above = [s for s in sizes if s >= n] or sizes[-1:]
    parts = []
    for size in sorted({below[-1], above[0]}):
        runs = [r for r in curve.rows if r.n_train == size]
        limited = sum(r.converged is False for r in runs)
        if limited:
            parts.append(f"N = {size} ({limited} of {len(runs)} runs)")
    return f"{who} still improving at {', '.join(parts)}" if parts else ""


def _ci_text(fit: PowerLawFit, name: str) -> str:
    """'0.51 [0.47, 0.54]' (a 95% CI), '0.51 (range 0.4 to 0.6)' (a range, not a CI) or
    just the value when there is neither."""
    value = f"{getattr(fit, name):.3g}"
    if name not in fit.ci or fit.interval == "none":
        return value
    lo, hi = fit.ci[name]
    if fit.interval == "95% CI":
        return f"{value} [{lo:.3g}, {hi:.3g}]"
    return f"{value} (range {lo:.3g} to {hi:.3g})"


def _fits_rows(fits) -> list[list[str]]:
    """Rows of the scaling-law table."""
    return [
        [*_names(c), c.key.model]
        + [_ci_text(f, k) for k in "abc"]
        + [f.interval, "yes" if f.c_at_bound else "no", f"{f.n_points} / {f.n_seeds}"]
        for c, f in fits
    ]


def _figure_or_note(blocks: list, ok: bool, draw, caption: str, note: str) -> Path | None:
    """Draw a figure and add it as a block when ``ok``; otherwise add ``note`` saying why not."""
    if not ok:
        blocks.append(("p", note))
        return None
    path = draw()
    blocks.append(("img", caption, path))
    return path


def _curve_sections(curves, out: Path, doubled: dict) -> tuple[list, list]:
    """Error-vs-N figure and summary table, savings table and figure, fits table."""
    tasks, savings = by_task(curves), _checked(savings_by_curve(curves), doubled)
    fits = fits_by_curve(curves)  # fitted once: drawn on the figure, printed in the table
    laws = {c.key: f for c, f in fits}
    b: list = [("h2", "Test error vs downstream examples")]
    f1 = _figure_or_note(
        b,
        bool(tasks),
        lambda: figures.error_vs_n(tasks, out / "error_vs_n.png", fits=laws),
        figures.error_vs_n_caption(tasks) if tasks else "",
        "No completed downstream runs yet.",
    )
    header = ["task", "method", "model", "N", "seeds", "test rel L2 (mean ± sd)"]
    b.append(("table", header, summary_rows(curves, _names)))
    b += [("h2", "Data savings"), ("p", SAVINGS_NOTE)]
    header = ["task", "fine-tune", "model", "target", "N scratch", "N fine-tune", "savings"]
    header += ["S(2B)", "drift", "verdict", "note"]
    b.append(("table", header, _savings_rows(savings, curves)))
    f2 = _figure_or_note(
        b,
        bool(savings),
        lambda: figures.savings_figure(savings, out / "savings.png"),
        "Savings factor vs target error (triangles: bounds)",
        "No task has both a scratch and a fine-tune curve of one model.",
    )
    b += [("h2", "Scaling-law fits"), ("p", FITS_NOTE)]
    header = ["task", "method", "model", "a", "b", "c", "interval", "floor at its bound"]
    b.append(("table", header + ["runs / seeds"], _fits_rows(fits)))
    b.append(("p", FLOOR_NOTE))
    return b, [f1, f2]


def _scaling_sections(rows: list[ResultRow], curves, out: Path, datasets) -> tuple[list, list]:
    """Model-size figure, OOD-shift figure, parameter histograms: each only when meaningful."""
    tasks = by_task(curves)
    shifts = figures.shift_points(usable_rows(rows))
    n_models = len({k.model for k in curves})
    multi_shift = any(len({s for by in p.values() for s in by}) > 1 for p in shifts.values())
    b: list = [("h2", "Error vs model size at fixed N")]
    f4 = _figure_or_note(
        b,
        n_models > 1,
        lambda: figures.model_size(tasks, out / "model_size.png"),
        "Test rel. L2 vs parameter count at each N",
        f"Only {n_models} model size in the results: no model-scaling figure.",
    )
    b += [("h2", "Error vs OOD shift"), ("p", SHIFT_NOTE)]
    f5 = _figure_or_note(
        b,
        multi_shift,
        lambda: figures.shift_figure(shifts, out / "shift.png"),
        "Fine-tune test rel. L2 vs shift, one line per N",
        "Fewer than two distinct shifts among fine-tune runs: no shift figure.",
    )
    b.append(("h2", "Parameter distributions"))
    f6 = _figure_or_note(
        b,
        bool(figures.ranged(datasets or {})),
        lambda: figures.histograms(datasets, out / "parameters.png"),
        "Realised physics-parameter histograms; declared ranges as bars at the bottom",
        "No dataset cards given: no parameter histograms."
        if not datasets
        else "No dataset with a declared parameter range: no parameter histograms.",
    )
    return b + _mixture_table(datasets or {}), [f4, f5, f6]


def _mixed_section(rows: list[ResultRow], tasks: dict, out: Path) -> tuple[list, list]:
    """Mixed vs single-family pre-training: figure, fine-tune and zero-shot tables and one
    sentence per comparison; nothing at all when no run starts from a mixture stage."""
    if not mixed.has_mixed(rows):
        return [], []
    comps = mixed.comparisons(rows, tasks)
    b: list = [("h2", "Mixed vs single-family pre-training"), ("p", mixed.NOTE)]
    fig = _figure_or_note(
        b,
        bool(comps),
        lambda: figures.mixed_figure(comps, out / "mixed_vs_single.png"),
        figures.mixed_caption(comps) if comps else "",
        "No completed run from a mixture stage yet.",
    )
    if comps:
        header = ["task", "mixed stage", "single-family stage", "mode", "model", "N"]
        header += ["fine-tune mixed", "fine-tune single", "scratch", "single / mixed"]
        b.append(("table", header, mixed.table_rows(comps)))
        header = ["task", "mixed stage", "zero-shot mixed", "single-family stage"]
        b.append(
            ("table", header + ["zero-shot single", "single / mixed"], mixed.zero_shot_rows(comps))
        )
        b += [("p", mixed.sentence(c)) for c in comps]
    return b, [fig]


def _training_sections(curves, out: Path, histories, samples) -> tuple[list, list]:
    """Validation curves (did training converge?) and test predictions next to the truth."""
    b: list = [("h2", "Validation during training")]
    f1 = _figure_or_note(
        b,
        figures.has_histories(curves, histories or {}),
        lambda: figures.validation_curves(curves, histories, out / "validation.png"),
        figures.VALIDATION_CAPTION,
        "No run recorded a validation history.",
    )
    b.append(("h2", "Predictions on test samples"))
    f2 = _figure_or_note(
        b,
        samples is not None,
        lambda: figures.samples_panel(samples, out / "samples.png"),
        figures.samples_caption(samples) if samples else "",
        "No checkpoint to predict with (no completed training run of a task, or `pdefm "
        "report` was given no study folder).",
    )
    return b, [f1, f2]


def _mixture_table(datasets: dict[str, dict]) -> list:
    """Per-family train counts of each mixture dataset (they have no parameter histogram)."""
    rows = [
        [name, d["role"], ", ".join(f"{f}: {n}" for f, n in d["families"].items())]
        for name, d in sorted(datasets.items())
        if d["family"] == "mixture"
    ]
    return [("table", ["mixture", "role", "train examples per family"], rows)] if rows else []


def _failed_section(rows: list[ResultRow]) -> list:
    """The table of failed or unfinished runs (or 'None.')."""
    fails = failed_rows(rows)
    header = ["run_id", "kind", "status", "task", "method", "model", "N", "seed"]
    body = ("table", header, fails) if fails else ("p", "None.")
    return [("h2", "Failed or unfinished runs"), body]


REFINE_HINT = (
    "To rerun just these with twice the budget and the learning rates around the chosen one: "
    "`pdefm study run STUDY.yaml --refine` (the report then uses the refined runs)."
)


def _split_appendix(blocks: list) -> tuple[list, list]:
    """The study file (long) goes to an appendix at the end; the rest stays up front."""
    body = [b for b in blocks if b[0] != "code" and b != ("p", "The study file as run:")]
    code = [b for b in blocks if b[0] == "code"]
    return body, ([("h2", "Appendix: the study file as run"), *code] if code else [])


def write_report(
    rows: list[ResultRow],
    out_dir: str | Path,
    title: str = "pdefm study",
    datasets: dict[str, dict] | None = None,
    setup: dict | None = None,
    histories: dict[str, list[dict]] | None = None,
    samples: dict | None = None,
) -> dict:
    """Write out_dir/report.md, report.html (PNGs embedded as base64), results.csv, *.png and
    an SVG copy of each PNG (same stem) for slides.

    ``setup`` (``pdefm.study.results.study_setup``, plus "command": how the report was made)
    fills the setup section: provenance, datasets, budgets and learning rates per N and the
    study file as run. ``histories`` (run id -> validation history,
    ``pdefm.report.samples.read_histories``) draws the validation curves and ``samples``
    (``pdefm.report.samples.predict_samples``) the prediction panel. Returns {"markdown":
    path, "html": path, "csv": path, "figures": [PNG paths], "headline": str}.
    Only completed downstream runs enter figures and fits; every row goes to results.csv and
    the ones not completed are listed in the report. Mappings of the results columns are
    taken too: they are checked and converted (:func:`pdefm.report.table.validate_rows`).
    """
    rows = validate_rows(rows)
    out = check_output_dir(out_dir, "the report folder")  # refused before anything is drawn
    out.mkdir(parents=True, exist_ok=True)
    curves = build_curves(rows)
    doubled = doubled_runs(rows)
    head = headline_from_curves(curves, doubled)
    n_down = len(usable_rows(rows))
    intro = f"{len(rows)} runs in the table; {n_down} completed downstream runs enter the figures."
    b1, f1 = _curve_sections(curves, out, doubled)
    b2, f2 = _scaling_sections(rows, curves, out, datasets)
    b3, f3 = _mixed_section(rows, by_task(curves), out)
    b4, f4 = _training_sections(curves, out, histories, samples)
    b5 = compute_blocks(rows, curves, datasets, doubled)
    setup_b, appendix = _split_appendix(setup_blocks(rows, setup))
    blocks = [("h1", title), ("headline", head), ("p", intro), *setup_b]
    blocks += [*flags_blocks(rows, REFINE_HINT), *b1, *b5, *b4, *b3, *b2]
    blocks += _failed_section(rows) + appendix
    figs = [f for f in f1 + f4 + f3 + f2 if f is not None]
    md, page = out / "report.md", out / "report.html"
    md.write_text(to_markdown(blocks), encoding="utf-8")
    page.write_text(to_html(blocks, title), encoding="utf-8")
    csv_path = write_csv(rows, out / "results.csv")
    return {"markdown": md, "html": page, "csv": csv_path, "figures": figs, "headline": head}
