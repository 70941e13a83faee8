"""The report's figures as PNG files, each with an SVG copy next to it.

matplotlib is used through ``matplotlib.figure.Figure`` (Agg canvas), never ``pyplot``: no
global figure state, no GUI backend, and the caller's backend choice is left alone.

Every public ``name(..., path) -> Path`` draws with a private ``_name_figure(...) -> Figure``
and saves it, so tests can read titles, legends and ticks off the Figure. Figures speak in
words (:mod:`pdefm.report.names`): "Poisson, e in [5, 10]" rather than a dataset name,
"fine-tuned from ..." rather than a curve key; axes of N are ticked at the sizes that were
run, and error axes carry plain decimals (0.01, 0.03, 0.1) instead of powers of ten. Text is
sized for a slide (:data:`~pdefm.report.figure_kit.TICK_PT` points and up at the saved size),
legends sit below the panels, and panels that compare one quantity share their axes.

The ``*_caption`` helpers return the text a report should print under each figure.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure

from pdefm.report.analysis import shift
from pdefm.report.figure_kit import (  # noqa: F401 (re-exported)
    FIT_LW,
    LEGEND_PT,
    MARKER_MS,
    MAX_SAMPLES,
    MEAN_LW,
    STYLE,
    VALIDATION_CAPTION,
    all_curves,
    count_axis,
    curve_labels,
    error_vs_n_caption,
    figure_legend,
    first_column,
    first_row,
    fit_legend,
    hollow_legend,
    hollow_points,
    label_colours,
    log_ticks,
    mixed_caption,
    panel_grid,
    params_text,
    plain_log_axis,
    samples_caption,
    save_figure,
    save_svg,
    seeds_note,
    size_colours,
    style_axes,
    task_titles,
)
from pdefm.report.fits import PowerLawFit, fit_power_law
from pdefm.report.mixed import ROLES, Comparison
from pdefm.report.names import (
    family_name,
    method_label,
    pretraining_title,
    row_task_title,
    task_title,
)
from pdefm.report.run_figures import (  # noqa: F401 (re-exported)
    has_histories,
    sample_arrays,
    samples_figure,
    samples_panel,
    seed_order,
    validation_curves,
    validation_figure,
)
from pdefm.report.table import Curve, CurveKey
from pdefm.study.row import ResultRow


# -- error vs N ----------------------------------------------------------------------------
def _draw_curve(
    ax,
    curve: Curve,
    colour: str,
    x_span: tuple[float, float],
    label: str | None = None,
    hollow: dict[int, str] | None = None,
) -> list:
    """Mean line plus min-max band; zero-shot (N = 0) as a horizontal line (and band) across
    ``x_span``. The legend text is ``label``, by default the curve's method in words. Points
    in ``hollow`` (N -> why, :func:`hollow_points`) get open markers (facecolor none): their
    value may still move. Returns the hollow-marker artists (empty when there are none)."""
    label = label or method_label(curve.key, first_row(curve))
    if curve.key.method == "zero-shot":
        errs = [e for es in curve.errors.values() for e in es]
        ax.hlines(float(np.mean(errs)), *x_span, colors=colour, linestyles=":", label=label)
        if len(errs) > 1:
            ax.fill_between(x_span, min(errs), max(errs), color=colour, alpha=0.1, linewidth=0)
        return []
    n, mean = curve.sizes(), curve.mean()
    lo, hi = curve.spread()
    is_open = np.array([int(x) in (hollow or {}) for x in n], dtype=bool)
    filled = [int(i) for i in np.flatnonzero(~is_open)]
    ax.plot(n, mean, STYLE[curve.key.method], color=colour, lw=MEAN_LW, marker="o",
            ms=MARKER_MS, markevery=filled, label=label)  # fmt: skip
    ax.fill_between(n, lo, hi, color=colour, alpha=0.15, linewidth=0)
    if not is_open.any():
        return []
    # hollow: a white-filled marker would hide the line and band behind it
    marks = ax.plot(n[is_open], mean[is_open], "o", ms=MARKER_MS, mfc="none", mec=colour,
                    mew=1.5, label="_hollow", gid="hollow")  # fmt: skip
    return marks


def _draw_fit(ax, curve: Curve, colour: str, fit: PowerLawFit | None) -> list:
    """The fitted law err = a N^-b + c of ``curve`` as a thin line in the curve's colour over
    the N range of its runs (nothing for a fit that failed or a curve of one size); returns
    the line in a list."""
    sizes = curve.sizes()
    if fit is None or sizes.size < 2 or not np.isfinite([fit.a, fit.b, fit.c]).all():
        return []
    n = np.geomspace(sizes[0], sizes[-1], 64)
    return ax.plot(n, fit.predict(n), "-", color=colour, lw=FIT_LW, label="_fit", gid="fit")


def _sizes(curves: Iterable[Curve]) -> list[int]:
    """The downstream sizes N > 0 run by these curves (or [1, 2] so an axis still exists)."""
    return sorted({n for c in curves for n in c.errors if n > 0}) or [1, 2]


def _error_vs_n_panel(ax, title: str) -> None:
    """Log-log axes, labels and title of one error-vs-N panel (ticks come after drawing)."""
    ax.set(xscale="log", yscale="log", xlabel="downstream training examples N")
    if first_column(ax):  # the y axis is shared along a row: one label says it
        ax.set_ylabel("test rel. L2")
    ax.set_title(title)
    style_axes(ax)


def _error_vs_n_ticks(ax, sizes: list[int]) -> None:
    """N ticked at the sizes run and plain error labels; once, on the shared axes, after all
    panels are drawn so the limits hold every panel's data."""
    count_axis(ax.xaxis, sizes)
    plain_log_axis(ax, "y")


def _curve_fits(
    curves: Iterable[Curve], fits: dict[CurveKey, PowerLawFit] | None
) -> dict[CurveKey, PowerLawFit]:
    """The fitted law of each scratch / fine-tune curve: from ``fits`` when given (the
    report's own fits table), else fitted here."""
    if fits is not None:
        return fits
    return {c.key: fit_power_law(*c.points()) for c in curves if c.key.method != "zero-shot"}


def _error_vs_n_figure(
    tasks: dict[str, list[Curve]],
    fits: dict[CurveKey, PowerLawFit] | None = None,
    unsettled: set[tuple] | None = None,
) -> Figure:
    """The Figure of :func:`error_vs_n`."""
    labels = curve_labels(all_curves(tasks))
    colours = label_colours(list(labels.values()))
    titles = task_titles(tasks)
    laws = _curve_fits(all_curves(tasks), fits)
    sizes = _sizes(all_curves(tasks))
    span = (min(sizes), max(sizes))
    fig, axes = panel_grid(len(tasks), sharex=True, sharey=True)
    kinds, drawn_fit = set(), False
    for ax, (task, curves) in zip(axes, tasks.items(), strict=True):
        for c in curves:
            colour, hollow = colours[labels[c.key]], hollow_points(c, unsettled)
            _draw_curve(ax, c, colour, span, labels[c.key], hollow)
            drawn_fit |= bool(_draw_fit(ax, c, colour, laws.get(c.key)))
            kinds |= set(hollow.values())
        _error_vs_n_panel(ax, titles[task])
    _error_vs_n_ticks(axes[0], sizes)
    extra = {**(fit_legend() if drawn_fit else {}), **hollow_legend(kinds)}
    figure_legend(fig, axes, seeds_note(all_curves(tasks)), extra=extra)
    return fig


def error_vs_n(
    tasks: dict[str, list[Curve]],
    path: Path,
    fits: dict[CurveKey, PowerLawFit] | None = None,
    unsettled: set[tuple] | None = None,
) -> Path:
    """Figure 1: test rel L2 vs downstream examples N (log-log), one panel per task (curves
    grouped by task name, as ``table.by_task`` gives), panels on shared axes. Caption:
    :func:`error_vs_n_caption`.

    Drawn per curve: the mean over seeds (markers at the sizes run) with its min-max band,
    zero-shot as a horizontal line, and the fitted law err = a N^-b + c as a thin line in the
    curve's colour over the N range of its runs (``fits``: curve key -> fit, as the report's
    fits table has them; None fits each curve here). A point is drawn hollow (facecolor none)
    when a run at that N has ``converged`` False ("budget-limited (still improving)" in the
    legend), or when ``(curve key, N)`` is in ``unsettled`` ("unsettled": e.g. a savings
    check found the point could still move); ``unsettled`` is a set of ``(CurveKey, int)``.
    """
    return save_figure(_error_vs_n_figure(tasks, fits, unsettled), path)


def _comparison_title(comp: Comparison) -> str:
    """ "Helmholtz, w in [10, 20]" over "mixed stage M vs Helmholtz, w in [1, 10] · fno-tiny"."""
    curves = [c for _, c in comp.curves()]
    row = next((r for c in curves for r in c.rows), None)
    title = comp.label if row is None else row_task_title(row)
    single = "no single-family stage"
    if comp.single_init is not None:
        single_curve = comp.single or comp.zs_single
        srow = first_row(single_curve) if single_curve is not None else None
        single = pretraining_title(comp.single_init, srow)
    return f"{title}\nmixed stage {comp.mixed_init} vs {single} · {comp.model}"


def _mixed_figure(comparisons: list[Comparison]) -> Figure:
    """The Figure of :func:`mixed_figure`."""
    colours = label_colours(list(ROLES))
    every = [c for comp in comparisons for _, c in comp.curves()]
    sizes = _sizes(every)
    fig, axes = panel_grid(len(comparisons), sharex=True, sharey=True)
    kinds = set()
    for ax, comp in zip(axes, comparisons, strict=True):
        for role, c in comp.curves():
            colour = colours[role.removeprefix("zs_")]  # zero-shot in its model's colour
            hollow = hollow_points(c)
            _draw_curve(ax, c, colour, (min(sizes), max(sizes)), ROLES[role], hollow)
            kinds |= set(hollow.values())
        _error_vs_n_panel(ax, _comparison_title(comp))
    _error_vs_n_ticks(axes[0], sizes)
    figure_legend(fig, axes, seeds_note(every), extra=hollow_legend(kinds))
    return fig


def mixed_figure(comparisons: list[Comparison], path: Path) -> Path:
    """Mixed vs single-family pre-training: test rel L2 vs N (log-log), one panel per
    comparison (task) on shared axes; one colour per role, shared by its fine-tune line and
    zero-shot line; points with a budget-limited run hollow. Caption: :func:`mixed_caption`."""
    return save_figure(_mixed_figure(comparisons), path)


# -- savings -------------------------------------------------------------------------------
def _savings_figure(savings: list[tuple[Curve, Curve, list[dict]]]) -> Figure:
    """The Figure of :func:`savings_figure`."""
    labels = curve_labels(ft for ft, _, _ in savings)
    tasks: dict[str, list] = defaultdict(list)
    for ft, _, res in savings:
        tasks[ft.key.task].append((labels[ft.key], res))
    titles = task_titles({t: [ft for ft, _, _ in savings if ft.key.task == t] for t in tasks})
    colours = label_colours(list(labels.values()))
    fig, axes = panel_grid(len(tasks), sharex=True, sharey=True)
    for ax, (task, items) in zip(axes, sorted(tasks.items()), strict=True):
        for label, res in items:
            _draw_savings(ax, res, colours[label], label)
        ax.axhline(1.0, color="grey", lw=0.8)
        ax.set(xscale="log", yscale="log", xlabel="target test rel. L2")
        ax.set_title(titles[task])
        if first_column(ax):
            ax.set_ylabel("savings: N scratch / N fine-tuned")
        style_axes(ax)
    # shared axes: ticks once, after every panel has its data
    plain_log_axis(axes[0], "x")
    plain_log_axis(axes[0], "y")
    figure_legend(
        fig,
        axes,
        "filled dots: settled by the savings check; hollow: not settled (a bar: "
        "budget-bound, from S at the budget run to S at twice it); triangles up / down: lower "
        "/ upper bounds",
    )
    return fig


def savings_figure(savings: list[tuple[Curve, Curve, list[dict]]], path: Path) -> Path:
    """Figure 2: savings factor vs target error per task (panels on shared axes); bounds as
    triangles (^ '>', v '<')."""
    return save_figure(_savings_figure(savings), path)


def _draw_savings(ax, res: list[dict], colour: str, label: str) -> None:
    """Exact savings as a line with dots; one-sided bounds as triangles in the same colour.
    A factor the savings check did not settle (``r["verdict"]`` other than "settled") is a
    hollow dot, and a budget-bound one (``r["savings_2b"]``) also a bar up to its value at
    twice the budget: the range it is printed as."""
    exact = [(r["target"], r["savings"]) for r in res if r["relation"] == "="]
    if exact:
        ax.plot(*zip(*exact, strict=True), "-", color=colour, lw=MEAN_LW, label=label)
    for r in res:
        if r["relation"] != "=":
            continue
        settled = r.get("verdict") == "settled"
        ax.plot(r["target"], r["savings"], "o", color=colour, ms=MARKER_MS,
                mfc=colour if settled else "none")  # fmt: skip
        if r.get("savings_2b") is not None and r.get("verdict") == "budget-bound":
            ax.plot([r["target"]] * 2, [r["savings"], r["savings_2b"]], color=colour, lw=2.5,
                    alpha=0.6)  # fmt: skip
    for rel, marker in ((">", "^"), ("<", "v")):
        pts = [(r["target"], r["savings"]) for r in res if r["relation"] == rel]
        if pts:
            lab = None if exact else label
            ax.plot(*zip(*pts, strict=True), marker, color=colour, ms=MARKER_MS + 2, ls="none",
                    label=lab)  # fmt: skip


# -- model size ----------------------------------------------------------------------------
def _model_size_figure(tasks: dict[str, list[Curve]]) -> Figure:
    """The Figure of :func:`model_size`."""
    panels = [(t, n) for t, cs in tasks.items() for n in sorted({n for c in cs for n in c.errors})]
    fig, axes = panel_grid(len(panels), width=4.4, height=3.6, ncols=4, sharex=True, sharey=True)
    labels = curve_labels(all_curves(tasks), with_model=False)
    colours = label_colours(list(labels.values()))
    titles = task_titles(tasks)
    for ax, (task, n) in zip(axes, panels, strict=True):
        _draw_size_panel(ax, tasks[task], n, labels, colours)
        ax.set(xscale="log", yscale="log", xlabel="parameters")
        size = "zero-shot (N = 0)" if n == 0 else f"N = {n}"
        ax.set_title(f"{titles[task]}, {size}")
        if first_column(ax):
            ax.set_ylabel("test rel. L2")
        style_axes(ax)
    # shared axes: ticks once, at every model size drawn, after every panel has its data
    params = [c.params for t, n in panels for c in tasks[t] if n in c.errors]
    count_axis(axes[0].xaxis, params, params_text)
    plain_log_axis(axes[0], "y")
    figure_legend(fig, axes, "mean test rel. L2 over seeds; one point per model preset")
    return fig


def model_size(tasks: dict[str, list[Curve]], path: Path) -> Path:
    """Figure 4: test error vs parameter count (log x), one panel per (task, N present), on
    shared axes."""
    return save_figure(_model_size_figure(tasks), path)


def _draw_size_panel(
    ax, curves: list[Curve], n: int, labels: dict[CurveKey, str], colours: dict[str, str]
) -> None:
    """One line per method (without model): mean error at N against params, one point per
    model."""
    lines: dict[str, list[tuple[int, float]]] = defaultdict(list)
    styles: dict[str, str] = {}
    for c in curves:
        if n in c.errors:
            lines[labels[c.key]].append((c.params, float(np.mean(c.errors[n]))))
            styles[labels[c.key]] = STYLE[c.key.method]
    for label, pts in lines.items():
        pts.sort()
        xy = zip(*pts, strict=True)
        ax.plot(*xy, styles[label], marker="o", ms=MARKER_MS, lw=MEAN_LW, color=colours[label],
                label=label)  # fmt: skip


# -- OOD shift -----------------------------------------------------------------------------
def shift_points(rows: list[ResultRow]) -> dict[str, dict[int, dict[float, list[float]]]]:
    """panel ("Family · model", plus " · mode M" for a mode other than full) -> N -> shift
    -> test errors of fine-tune runs."""
    out: dict = defaultdict(lambda: defaultdict(lambda: defaultdict(list)))
    for r in rows:
        s = shift(r) if r.method == "finetune" else math.nan
        if math.isfinite(s):
            mode = "" if r.mode == "full" else f" · mode {r.mode}"
            panel = f"{family_name(r.family)} · {r.model}{mode}"
            out[panel][int(r.n_train)][round(s, 9)].append(float(r.test_rel_l2))
    return out


def _shift_figure(points: dict) -> Figure:
    """The Figure of :func:`shift_figure`."""
    colours = size_colours(sorted({n for by_n in points.values() for n in by_n}))
    fig, axes = panel_grid(len(points), sharex=True, sharey=True)
    for ax, (panel, by_n) in zip(axes, sorted(points.items()), strict=True):
        for n, by_shift in sorted(by_n.items()):
            xs = sorted(by_shift)
            ys = [float(np.mean(by_shift[x])) for x in xs]
            ax.plot(xs, ys, "-o", lw=MEAN_LW, ms=MARKER_MS, color=colours[n], label=f"N = {n}")
        ax.set(yscale="log", xlabel="shift (pre-training widths)")
        ax.set_title(f"fine-tuned: {panel}")
        if first_column(ax):
            ax.set_ylabel("test rel. L2 (mean over seeds)")
        style_axes(ax)
    plain_log_axis(axes[0], "y")  # shared: once, after every panel has its data
    figure_legend(fig, axes, "downstream training examples", ncols=min(8, len(colours)))
    return fig


def shift_figure(points: dict, path: Path) -> Path:
    """Figure 5: mean test error vs OOD shift, one line per N, one panel per family/model/mode,
    on shared axes."""
    return save_figure(_shift_figure(points), path)


# -- parameter histograms ------------------------------------------------------------------
def _hist_xy(hist: dict) -> tuple[np.ndarray, np.ndarray, bool]:
    """(x, density, is_integer_law): bin edges with fraction / bin width, or integer values with
    their fractions (a width of 1)."""
    counts = hist.get("counts", {})
    if isinstance(counts, dict):
        xs = np.array(sorted(float(k) for k in counts))
        ys = np.array([counts[k] for k in sorted(counts, key=float)], dtype=float)
        return xs, ys / max(ys.sum(), 1.0), True
    ys, edges = np.asarray(counts, dtype=float), np.asarray(hist["edges"], dtype=float)
    # density (fraction per unit of the parameter): bins of different widths stay comparable
    return edges, ys / max(ys.sum(), 1.0) / np.diff(edges), False


def ranged(datasets: dict[str, dict]) -> dict[str, dict]:
    """The datasets with a declared [low, high] (a mixture of families has none)."""
    return {n: d for n, d in datasets.items() if None not in (d.get("low"), d.get("high"))}


def _histograms_figure(datasets: dict[str, dict]) -> Figure:
    """The Figure of :func:`histograms`."""
    families: dict[str, list] = defaultdict(list)
    for name, d in sorted(ranged(datasets).items()):
        families[d["family"]].append((name, d))
    fig, axes = panel_grid(len(families), width=5.5, ncols=2)
    for ax, (family, items) in zip(axes, sorted(families.items()), strict=True):
        for i, (name, d) in enumerate(items):
            _draw_hist(ax, name, d, f"C{i % 10}")
        ax.set_title(family_name(family))
        ax.set_xlabel(f"physics parameter {items[0][1].get('parameter', '')}".strip())
        ax.set_ylabel("density (fraction per unit)")
        style_axes(ax)
        # below the panel: inside it the legend would cover bars; the layout makes room
        ax.legend(fontsize=LEGEND_PT, loc="upper center", bbox_to_anchor=(0.5, -0.22), ncols=1)
    return fig


def histograms(datasets: dict[str, dict], path: Path) -> Path:
    """Figure 6: realised parameter histograms, one axis per family; pre-training solid,
    downstream hatched, declared ranges as spans below the axis so the shift is visible;
    each panel's legend below it. Families have their own parameters: no shared axes.
    Datasets without a declared range (mixtures) are left out."""
    return save_figure(_histograms_figure(datasets), path)


def _draw_hist(ax, name: str, d: dict, colour: str) -> None:
    """One dataset: its histogram (if any) and its declared [low, high] as a thin span."""
    pre = d.get("role") == "pretrain"
    role = {"pretrain": "pre-training", "downstream": "downstream"}.get(d.get("role"), "?")
    rng = task_title(d["family"], d.get("parameter"), d["low"], d["high"])
    # the panel names the family already; keep "e in [1, 5]" and the dataset for reference
    label = f"{rng.split(', ', 1)[-1]} ({role}, {name})"
    # integer laws may carry their per-value counts at the top level (as study.results writes)
    hist = d.get("histogram") or (
        {"counts": d["counts"]} if isinstance(d.get("counts"), dict) else None
    )
    if hist:
        x, y, integer = _hist_xy(hist)
        if integer:
            ax.bar(x, y, width=0.8, alpha=0.5, color=colour, hatch=None if pre else "//")
        else:
            ax.stairs(y, x, fill=True, alpha=0.4, color=colour, hatch=None if pre else "//")
    ax.axvspan(d["low"], d["high"], ymin=0, ymax=0.03, color=colour, label=label)
