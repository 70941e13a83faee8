"""The report's figures as PNG files.

matplotlib is used through ``matplotlib.figure.Figure`` (Agg canvas), never ``pyplot``: no
global figure state, no GUI backend, and the caller's backend choice is left alone.

Every public ``name(..., path) -> Path`` draws with a private ``_name_figure(...) -> Figure``
and saves it, so tests can read titles, legends and ticks off the Figure. Figures speak in
words (:mod:`pdefm.report.names`): "Poisson, e in [5, 10]" rather than a dataset name,
"fine-tuned from ..." rather than a curve key; axes of N are ticked at the sizes that were
run, and error axes carry plain decimals (0.01, 0.03, 0.1) instead of powers of ten.

The ``*_caption`` helpers return the text a report should print under each figure.
"""

from __future__ import annotations

import io
import math
from collections import Counter, defaultdict
from collections.abc import Iterable
from pathlib import Path

import numpy as np
from matplotlib import colormaps
from matplotlib.figure import Figure
from matplotlib.ticker import FixedFormatter, FixedLocator, MaxNLocator, NullFormatter

from pdefm.errors import PdefmError
from pdefm.report.analysis import shift
from pdefm.report.mixed import ROLES, Comparison
from pdefm.report.names import (
    family_name,
    method_label,
    plain_number,
    pretraining_title,
    row_task_title,
    task_title,
)
from pdefm.report.table import Curve, CurveKey

STYLE = {"finetune": "-", "scratch": "--", "zero-shot": ":"}
DPI = 110
#: Tick mantissas for log axes, sparsest first: 0.01 0.1 1, then 0.01 0.03 0.1, ...
MANTISSAS = ((1,), (1, 3), (1, 2, 5), (1, 2, 3, 5), (1, 2, 3, 4, 5, 6, 7, 8, 9))
#: At most this many test samples (rows) in the samples panel.
MAX_SAMPLES = 4
LINE_STYLES_TEXT = (
    "solid: fine-tuned; dashed: trained from scratch; dotted horizontal line: zero-shot "
    "(uses no downstream examples)"
)
VALIDATION_CAPTION = (
    "Validation rel. L2 during training against the optimiser step, one panel per task and "
    "method; colour: downstream examples N; thin lines: single seeds, thick line: their mean "
    "(when the seeds share their validation steps); dot: the lowest validation error of a run, "
    "whose weights are kept. A dot at the last step means training had not yet converged."
)


# -- layout --------------------------------------------------------------------------------
def _grid(n_panels: int, width: float = 4.2, height: float = 3.3, ncols: int = 3):
    """A figure with n panels on a grid of at most ``ncols`` columns; returns (fig, axes)."""
    ncols = max(1, min(ncols, n_panels))
    nrows = math.ceil(n_panels / ncols)
    fig = Figure(figsize=(width * ncols, height * nrows), layout="constrained")
    axes = fig.subplots(nrows, ncols, squeeze=False).ravel()
    for ax in axes[n_panels:]:
        ax.set_visible(False)
    return fig, axes[:n_panels]


def _save(fig: Figure, path: Path) -> Path:
    """Write ``fig`` as a 256-colour PNG and return the path. The palette keeps figures
    small (a third to a quarter of the RGBA size) for reports kept in a repository; line
    plots and colour maps of 256 levels lose nothing visible."""
    from PIL import Image  # matplotlib's own dependency

    buffer = io.BytesIO()
    fig.savefig(buffer, dpi=DPI, format="png", bbox_inches="tight")  # keep wide legends whole
    buffer.seek(0)
    with Image.open(buffer) as image:
        small = image.convert("RGB").quantize(colors=256, method=Image.Quantize.MEDIANCUT)
        small.save(path, format="PNG", optimize=True)
    return path


def _figure_legend(fig: Figure, axes, title: str | None = None, ncols: int = 2) -> None:
    """One legend below all panels (labels deduplicated), so no panel's data is covered;
    ``title`` explains what lines and bands are."""
    seen: dict[str, object] = {}
    for ax in axes:
        for handle, label in zip(*ax.get_legend_handles_labels(), strict=True):
            seen.setdefault(label, handle)
    if seen:
        fig.legend(
            seen.values(),
            seen.keys(),
            loc="outside lower center",
            ncols=ncols,
            fontsize=7,
            title=title,
            title_fontsize=7,
        )


def _colours(labels: list[str]) -> dict[str, str]:
    """A stable colour per label (tab10 cycled), shared by every panel of a figure."""
    return {lab: f"C{i % 10}" for i, lab in enumerate(dict.fromkeys(labels))}


def _n_colours(sizes: list[int]) -> dict[int, tuple]:
    """A colour per N from a sequential map (dark: few examples, light: many), the yellow end
    left out so that the lightest line is still visible on white."""
    cmap = colormaps["viridis"]
    k = len(sizes)
    return {n: cmap(0.85 * i / max(k - 1, 1)) for i, n in enumerate(sizes)}


# -- words ---------------------------------------------------------------------------------
def _first_row(curve: Curve) -> dict | None:
    """A row of the curve (they share task and init), or None for a curve built by hand."""
    return curve.rows[0] if curve.rows else None


def curve_labels(curves: Iterable[Curve], with_model: bool = True) -> dict[CurveKey, str]:
    """Legend text per curve key (:func:`~pdefm.report.names.method_label`). Two different
    inits with the same pre-training data would read alike: their stage names are appended."""
    curves = list(curves)
    labels = {c.key: method_label(c.key, _first_row(c), with_model) for c in curves}
    # distinct (method, init, mode[, model]) sharing a text; the same one across tasks is fine
    ident = {k: (k.method, k.init, k.mode, k.model if with_model else "") for k in labels}
    owners: dict[str, set] = defaultdict(set)
    for k, text in labels.items():
        owners[text].add(ident[k])
    return {
        k: f"{text} [stage {k.init}]" if len(owners[text]) > 1 and k.init != "scratch" else text
        for k, text in labels.items()
    }


def task_titles(tasks: dict[str, list[Curve]]) -> dict[str, str]:
    """Task name -> panel title in words ("Poisson, e in [5, 10]"); two tasks that would read
    alike (same family and range) get their dataset names appended."""
    titles = {}
    for task, curves in tasks.items():
        row = next((r for c in curves for r in c.rows), None)
        titles[task] = task if row is None else row_task_title(row)
    counts = Counter(titles.values())
    return {t: f"{title} ({t})" if counts[title] > 1 else title for t, title in titles.items()}


def seeds_note(curves: Iterable[Curve]) -> str:
    """What a line and its band are, with the number of seeds read from the data: "line: mean
    over 3 seeds; band: min to max over seeds", "one seed: no band", or a range of counts."""
    counts = sorted({len(es) for c in curves for es in c.errors.values() if es})
    if not counts or counts == [1]:
        return "one seed per point: line through the runs, no band"
    seeds = f"{counts[0]} seeds" if len(counts) == 1 else f"{counts[0]} to {counts[-1]} seeds"
    note = f"line: mean over {seeds}; band: min to max over seeds"
    return note + (" (one seed: no band)" if counts[0] == 1 else "")


def _all_curves(tasks: dict[str, list[Curve]]) -> list[Curve]:
    return [c for cs in tasks.values() for c in cs]


def error_vs_n_caption(tasks: dict[str, list[Curve]]) -> str:
    """Caption of :func:`error_vs_n` for these curves (seed counts from the data)."""
    return (
        "Test rel. L2 against the number of downstream training examples N (log-log), one "
        f"panel per task; {LINE_STYLES_TEXT}. {_sentence(seeds_note(_all_curves(tasks)))}"
    )


def mixed_caption(comparisons: list[Comparison]) -> str:
    """Caption of :func:`mixed_figure` for these comparisons (seed counts from the data)."""
    curves = [c for comp in comparisons for _, c in comp.curves()]
    return (
        "Test rel. L2 against N per task: fine-tuned from the mixed pre-training and from the "
        "pre-training on the task's own family (solid), trained from scratch with the mixed "
        "model's preset (dashed), zero-shot of both pre-trained models (dotted). "
        f"{_sentence(seeds_note(curves))}"
    )


def samples_caption(samples: dict) -> str:
    """Caption of :func:`samples_panel`; names the run behind each column label when
    ``samples`` carries ``details`` (label -> method in words, as ``predict_samples`` gives)."""
    text = (
        "Rows: test samples. Columns: the source field (input), the true solution, each "
        "method's prediction (one colour scale per row, shared with the truth), then each "
        "method's absolute error |prediction - truth| (one scale per row) with its rel. L2."
    )
    details = samples.get("details") or {}
    if details:
        # "zero-shot: zero-shot: pre-trained on ..." says it twice
        runs = (f"{label}: {what.removeprefix(label + ': ')}" for label, what in details.items())
        text += " " + "; ".join(runs) + "."
    return text


def _sentence(text: str) -> str:
    return text[:1].upper() + text[1:] + "."


# -- ticks ---------------------------------------------------------------------------------
def _tick_text(x: float) -> str:
    """A tick label: plain decimals where they stay short, else the shortest %g form."""
    return plain_number(x) if 1e-4 <= abs(x) < 1e6 else f"{x:g}"


def _log_span(lo: float, hi: float) -> float:
    return math.log10(hi / lo)


def log_ticks(lo: float, hi: float, min_ticks: int = 3) -> list[float]:
    """Round tick values for a log axis over [lo, hi]: the sparsest of 1, 1-3, 1-2-5, ... per
    decade that gives ``min_ticks`` ticks, or two ticks spanning half the range (so 0.1 and
    0.2 rather than 0.08, 0.09, 0.1 crowded at one end); on a range under a factor of about
    1.1, evenly spaced round values. A tick may lie up to a tenth of the range (in log)
    outside [lo, hi]: the caller widens the limits to it."""
    if not (0 < lo <= hi and math.isfinite(hi)):
        return []
    pad = 10 ** (0.1 * _log_span(lo, hi))
    lo_x, hi_x = lo / pad * (1 - 1e-9), hi * pad * (1 + 1e-9)
    decades = range(math.floor(math.log10(lo_x)), math.ceil(math.log10(hi_x)) + 1)
    # float("3e-2") is exactly the double nearest 0.03, unlike 3 * 10.0**-2
    levels = [[float(f"{m}e{k}") for k in decades for m in mants] for mants in MANTISSAS]
    levels = [[t for t in cands if lo_x <= t <= hi_x] for cands in levels]
    enough = [t for t in levels[:-1] if len(t) >= min_ticks]  # 1 to 9 per decade: crowded
    wide = [t for t in levels if len(t) >= 2 and _log_span(t[0], t[-1]) >= 0.5 * _log_span(lo, hi)]
    ticks = next(iter(enough + wide), levels[-1])
    if len(ticks) >= 2:
        return ticks
    # under a factor of about 1.1 no round log values fit: evenly spaced round values do
    cands = MaxNLocator(nbins=4, steps=[1, 2, 2.5, 5, 10]).tick_values(lo, hi)
    inside = [float(f"{t:.12g}") for t in cands if lo * (1 - 1e-9) <= t <= hi * (1 + 1e-9)]
    return inside or [float(f"{math.sqrt(lo * hi):.3g}")]


def _set_ticks(axis, ticks: list[float], labels: list[str]) -> None:
    """Fixed major ticks with these labels; minor ticks (log) kept but unlabelled."""
    axis.set_major_locator(FixedLocator(ticks))
    axis.set_major_formatter(FixedFormatter(labels))
    axis.set_minor_formatter(NullFormatter())


def _plain_log_axis(ax, which: str = "y") -> None:
    """Plain decimal ticks (0.01, 0.03, 0.1) on a log axis. Call it after drawing: it freezes
    the limits the data gave (widened to a tick just outside them)."""
    axis = ax.yaxis if which == "y" else ax.xaxis
    get, set_ = (ax.get_ylim, ax.set_ylim) if which == "y" else (ax.get_xlim, ax.set_xlim)
    lo, hi = sorted(get())
    ticks = log_ticks(lo, hi)
    _set_ticks(axis, ticks, [_tick_text(t) for t in ticks])
    set_(min([lo, *ticks]), max([hi, *ticks]))


def _count_axis(axis, values: Iterable[float], text=None) -> None:
    """Ticks at exactly the counts that were run (N, parameters), labelled as integers."""
    ticks = sorted({int(v) for v in values if v > 0})
    _set_ticks(axis, ticks, [(text or str)(t) for t in ticks])


def _params_text(p: int) -> str:
    """A parameter count in short: 9000 -> "9k", 1_030_000 -> "1.03M"."""
    if p >= 1e6:
        return f"{p / 1e6:.3g}M"
    return f"{p / 1e3:.3g}k" if p >= 1e3 else str(p)


# -- error vs N ----------------------------------------------------------------------------
def _draw_curve(
    ax, curve: Curve, colour: str, x_span: tuple[float, float], label: str | None = None
) -> None:
    """Mean line plus min-max band; zero-shot (N = 0) as a horizontal line (and band) across
    ``x_span``. The legend text is ``label``, by default the curve's method in words."""
    label = label or method_label(curve.key, _first_row(curve))
    if curve.key.method == "zero-shot":
        errs = [e for es in curve.errors.values() for e in es]
        ax.hlines(float(np.mean(errs)), *x_span, colors=colour, linestyles=":", label=label)
        if len(errs) > 1:
            ax.fill_between(x_span, min(errs), max(errs), color=colour, alpha=0.1, linewidth=0)
        return
    n, mean = curve.sizes(), curve.mean()
    lo, hi = curve.spread()
    ax.plot(n, mean, STYLE[curve.key.method], color=colour, marker="o", ms=3, label=label)
    ax.fill_between(n, lo, hi, color=colour, alpha=0.15, linewidth=0)


def _sizes(curves: Iterable[Curve]) -> list[int]:
    """The downstream sizes N > 0 run by these curves (or [1, 2] so an axis still exists)."""
    return sorted({n for c in curves for n in c.errors if n > 0}) or [1, 2]


def _error_vs_n_axes(ax, sizes: list[int], title: str) -> None:
    """Log-log axes with N ticked at the sizes run and plain error labels."""
    ax.set(xscale="log", yscale="log", xlabel="downstream training examples N")
    ax.set_ylabel("test rel. L2")
    ax.set_title(title, fontsize=9)
    _count_axis(ax.xaxis, sizes)
    _plain_log_axis(ax, "y")
    ax.tick_params(labelsize=7)


def _error_vs_n_figure(tasks: dict[str, list[Curve]]) -> Figure:
    """The Figure of :func:`error_vs_n`."""
    labels = curve_labels(_all_curves(tasks))
    colours = _colours(list(labels.values()))
    titles = task_titles(tasks)
    fig, axes = _grid(len(tasks))
    for ax, (task, curves) in zip(axes, tasks.items(), strict=True):
        sizes = _sizes(curves)
        for c in curves:
            _draw_curve(ax, c, colours[labels[c.key]], (min(sizes), max(sizes)), labels[c.key])
        _error_vs_n_axes(ax, sizes, titles[task])
    _figure_legend(fig, axes, seeds_note(_all_curves(tasks)))
    return fig


def error_vs_n(tasks: dict[str, list[Curve]], path: Path) -> Path:
    """Figure 1: test rel L2 vs downstream examples N (log-log), one panel per task (curves
    grouped by task name, as ``table.by_task`` gives). Caption: :func:`error_vs_n_caption`."""
    return _save(_error_vs_n_figure(tasks), path)


def _comparison_title(comp: Comparison) -> str:
    """ "Helmholtz, w in [10, 20]" over "mixed stage M vs Helmholtz, w in [1, 10] · fno-tiny"."""
    curves = [c for _, c in comp.curves()]
    row = next((r for c in curves for r in c.rows), None)
    title = comp.label if row is None else row_task_title(row)
    single = "no single-family stage"
    if comp.single_init is not None:
        single_curve = comp.single or comp.zs_single
        srow = _first_row(single_curve) if single_curve is not None else None
        single = pretraining_title(comp.single_init, srow)
    return f"{title}\nmixed stage {comp.mixed_init} vs {single} · {comp.model}"


def _mixed_figure(comparisons: list[Comparison]) -> Figure:
    """The Figure of :func:`mixed_figure`."""
    colours = _colours(list(ROLES))
    fig, axes = _grid(len(comparisons))
    for ax, comp in zip(axes, comparisons, strict=True):
        curves = comp.curves()
        sizes = _sizes(c for _, c in curves)
        for role, c in curves:
            colour = colours[role.removeprefix("zs_")]  # zero-shot in its model's colour
            _draw_curve(ax, c, colour, (min(sizes), max(sizes)), label=ROLES[role])
        _error_vs_n_axes(ax, sizes, _comparison_title(comp))
        ax.title.set_fontsize(8)
    curves = [c for comp in comparisons for _, c in comp.curves()]
    _figure_legend(fig, axes, seeds_note(curves))
    return fig


def mixed_figure(comparisons: list[Comparison], path: Path) -> Path:
    """Mixed vs single-family pre-training: test rel L2 vs N (log-log), one panel per
    comparison (task); one colour per role, shared by its fine-tune line and zero-shot line.
    Caption: :func:`mixed_caption`."""
    return _save(_mixed_figure(comparisons), path)


# -- savings -------------------------------------------------------------------------------
def _savings_figure(savings: list[tuple[Curve, Curve, list[dict]]]) -> Figure:
    """The Figure of :func:`savings_figure`."""
    labels = curve_labels(ft for ft, _, _ in savings)
    tasks: dict[str, list] = defaultdict(list)
    for ft, _, res in savings:
        tasks[ft.key.task].append((labels[ft.key], res))
    titles = task_titles({t: [ft for ft, _, _ in savings if ft.key.task == t] for t in tasks})
    colours = _colours(list(labels.values()))
    fig, axes = _grid(len(tasks))
    for ax, (task, items) in zip(axes, sorted(tasks.items()), strict=True):
        for label, res in items:
            _draw_savings(ax, res, colours[label], label)
        ax.axhline(1.0, color="grey", lw=0.8)
        ax.set(xscale="log", yscale="log", xlabel="target test rel. L2")
        ax.set_title(titles[task], fontsize=9)
        ax.set_ylabel("savings: N scratch / N fine-tuned")
        _plain_log_axis(ax, "x")
        _plain_log_axis(ax, "y")
        ax.tick_params(labelsize=7)
    _figure_legend(fig, axes, "dots: exact; triangles up / down: lower / upper bounds")
    return fig


def savings_figure(savings: list[tuple[Curve, Curve, list[dict]]], path: Path) -> Path:
    """Figure 2: savings factor vs target error per task; bounds as triangles (^ '>', v '<')."""
    return _save(_savings_figure(savings), path)


def _draw_savings(ax, res: list[dict], colour: str, label: str) -> None:
    """Exact savings as a line with dots; one-sided bounds as triangles in the same colour."""
    exact = [(r["target"], r["savings"]) for r in res if r["relation"] == "="]
    if exact:
        ax.plot(*zip(*exact, strict=True), "-o", color=colour, ms=4, label=label)
    for rel, marker in ((">", "^"), ("<", "v")):
        pts = [(r["target"], r["savings"]) for r in res if r["relation"] == rel]
        if pts:
            lab = None if exact else label
            ax.plot(*zip(*pts, strict=True), marker, color=colour, ms=6, ls="none", label=lab)


# -- model size ----------------------------------------------------------------------------
def _model_size_figure(tasks: dict[str, list[Curve]]) -> Figure:
    """The Figure of :func:`model_size`."""
    panels = [(t, n) for t, cs in tasks.items() for n in sorted({n for c in cs for n in c.errors})]
    fig, axes = _grid(len(panels), width=3.2, height=2.6, ncols=4)
    labels = curve_labels(_all_curves(tasks), with_model=False)
    colours = _colours(list(labels.values()))
    titles = task_titles(tasks)
    for ax, (task, n) in zip(axes, panels, strict=True):
        _draw_size_panel(ax, tasks[task], n, labels, colours)
        ax.set(xscale="log", yscale="log", xlabel="parameters")
        size = "zero-shot (N = 0)" if n == 0 else f"N = {n}"
        ax.set_title(f"{titles[task]}, {size}", fontsize=8)
        params = [c.params for c in tasks[task] if n in c.errors]
        _count_axis(ax.xaxis, params, _params_text)
        _plain_log_axis(ax, "y")
        ax.tick_params(labelsize=6)
    axes[0].set_ylabel("test rel. L2")
    _figure_legend(fig, axes, "mean test rel. L2 over seeds; one point per model preset")
    return fig


def model_size(tasks: dict[str, list[Curve]], path: Path) -> Path:
    """Figure 4: test error vs parameter count (log x), one panel per (task, N present)."""
    return _save(_model_size_figure(tasks), path)


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
        ax.plot(*xy, styles[label], marker="o", ms=3, color=colours[label], label=label)


# -- OOD shift -----------------------------------------------------------------------------
def shift_points(rows: list[dict]) -> dict[str, dict[int, dict[float, list[float]]]]:
    """panel ("Family · model", plus " · mode M" for a mode other than full) -> N -> shift
    -> test errors of fine-tune runs."""
    out: dict = defaultdict(lambda: defaultdict(lambda: defaultdict(list)))
    for r in rows:
        s = shift(r) if r["method"] == "finetune" else math.nan
        if math.isfinite(s):
            mode = "" if r["mode"] == "full" else f" · mode {r['mode']}"
            panel = f"{family_name(r['family'])} · {r['model']}{mode}"
            out[panel][int(r["n_train"])][round(s, 9)].append(float(r["test_rel_l2"]))
    return out


def _shift_figure(points: dict) -> Figure:
    """The Figure of :func:`shift_figure`."""
    colours = _n_colours(sorted({n for by_n in points.values() for n in by_n}))
    fig, axes = _grid(len(points))
    for ax, (panel, by_n) in zip(axes, sorted(points.items()), strict=True):
        for n, by_shift in sorted(by_n.items()):
            xs = sorted(by_shift)
            ys = [float(np.mean(by_shift[x])) for x in xs]
            ax.plot(xs, ys, "-o", ms=3, color=colours[n], label=f"N = {n}")
        ax.set(yscale="log", xlabel="shift (pre-training widths)")
        ax.set_title(f"fine-tuned: {panel}", fontsize=9)
        ax.set_ylabel("test rel. L2 (mean over seeds)")
        _plain_log_axis(ax, "y")
        ax.tick_params(labelsize=7)
    _figure_legend(fig, axes, "downstream training examples", ncols=min(8, len(colours)))
    return fig


def shift_figure(points: dict, path: Path) -> Path:
    """Figure 5: mean test error vs OOD shift, one line per N, one panel per family/model/mode."""
    return _save(_shift_figure(points), path)


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
    fig, axes = _grid(len(families), width=5.5, ncols=2)
    for ax, (family, items) in zip(axes, sorted(families.items()), strict=True):
        for i, (name, d) in enumerate(items):
            _draw_hist(ax, name, d, f"C{i % 10}")
        ax.set_title(family_name(family), fontsize=9)
        ax.set_xlabel(f"physics parameter {items[0][1].get('parameter', '')}".strip())
        ax.set_ylabel("density (fraction per unit)")
        ax.legend(fontsize=6)
    return fig


def histograms(datasets: dict[str, dict], path: Path) -> Path:
    """Figure 6: realised parameter histograms, one axis per family; pre-training solid,
    downstream hatched, declared ranges as spans below the axis so the shift is visible.
    Datasets without a declared range (mixtures) are left out."""
    return _save(_histograms_figure(datasets), path)


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


# -- validation curves ---------------------------------------------------------------------
def _history_xy(history: list[dict] | None) -> tuple[np.ndarray, np.ndarray] | None:
    """(steps, val rel L2) with finite positive values (a log-log plot), or None if empty."""
    pts = [
        (float(h["step"]), float(h["val_rel_l2"]))
        for h in history or []
        if _positive(h.get("step")) and _positive(h.get("val_rel_l2"))
    ]
    if not pts:
        return None
    steps, vals = zip(*pts, strict=True)
    return np.array(steps), np.array(vals)


def _positive(x: object) -> bool:
    return isinstance(x, (int, float)) and math.isfinite(x) and x > 0


def _curve_histories(
    curve: Curve, histories: dict[str, list[dict]]
) -> dict[int, list[tuple[np.ndarray, np.ndarray]]]:
    """N -> (steps, val errors) of each of the curve's runs with a history, in seed order."""
    out: dict[int, list] = defaultdict(list)
    for row in sorted(curve.rows, key=lambda r: (int(r["n_train"]), seed_order(r))):
        xy = _history_xy(histories.get(row["run_id"]))
        if xy is not None:
            out[int(row["n_train"])].append(xy)
    return dict(sorted(out.items()))


def seed_order(row: dict) -> tuple:
    """Sort key of a row's seed: numbers in numeric order (2 before 10), anything else after."""
    seed = row.get("seed")
    number = isinstance(seed, (int, float)) and not isinstance(seed, bool)
    return (0, seed, "") if number else (1, 0, str(seed))


def _curve_list(curves) -> list[Curve]:
    """Curves from a ``{CurveKey: Curve}`` mapping or any iterable of curves."""
    return list(curves.values()) if isinstance(curves, dict) else list(curves)


def has_histories(curves, histories: dict[str, list[dict]]) -> bool:
    """True when some run of ``curves`` has a validation history to draw."""
    return any(_curve_histories(c, histories) for c in _curve_list(curves))


def _draw_histories(ax, runs: list[tuple[np.ndarray, np.ndarray]], colour, label: str) -> None:
    """The seeds of one N: thin lines and a dot at each best point; with several seeds on the
    same steps, their mean as a thick line."""
    shared = len(runs) > 1 and all(np.array_equal(runs[0][0], s) for s, _ in runs)
    thin = len(runs) > 1
    for i, (steps, vals) in enumerate(runs):
        lab = label if i == 0 and not shared else None
        ax.plot(
            steps,
            vals,
            color=colour,
            lw=0.7 if thin else 1.5,
            alpha=0.6 if thin else 1.0,
            label=lab,
        )
        best = int(np.argmin(vals))
        ax.plot(steps[best], vals[best], "o", color=colour, ms=3)
    if shared:
        mean = np.mean([v for _, v in runs], axis=0)
        ax.plot(runs[0][0], mean, color=colour, lw=1.8, label=label)


def _validation_figure(
    curves, histories: dict[str, list[dict]], titles: dict[str, str] | None = None
) -> Figure:
    """The Figure of :func:`validation_curves`."""
    panels = [(c, h) for c in _curve_list(curves) if (h := _curve_histories(c, histories))]
    if not panels:
        fig, (ax,) = _grid(1)
        ax.text(0.5, 0.5, "no validation history recorded", ha="center", va="center")
        ax.set_axis_off()
        return fig
    tasks: dict[str, list[Curve]] = defaultdict(list)
    for c, _ in panels:
        tasks[c.key.task].append(c)
    names = {**task_titles(tasks), **(titles or {})}
    labels = curve_labels(c for c, _ in panels)
    colours = _n_colours(sorted({n for _, h in panels for n in h}))
    fig, axes = _grid(len(panels))
    for ax, (curve, by_n) in zip(axes, panels, strict=True):
        for n, runs in by_n.items():
            _draw_histories(ax, runs, colours[n], f"N = {n}")
        ax.set(xscale="log", yscale="log", xlabel="optimiser step")
        ax.set_ylabel("validation rel. L2")
        ax.set_title(f"{names[curve.key.task]}\n{labels[curve.key]}", fontsize=8)
        _plain_log_axis(ax, "x")
        _plain_log_axis(ax, "y")
        ax.tick_params(labelsize=7)
    legend = "thin: one seed; thick: mean over seeds; dot: lowest validation error (kept)"
    _figure_legend(fig, axes, legend, ncols=min(6, len(colours)))
    return fig


def validation_curves(
    curves,
    histories: dict[str, list[dict]],
    path: Path,
    titles: dict[str, str] | None = None,
) -> Path:
    """Validation rel. L2 against optimiser step (log-log), so a reader sees whether training
    converged: one panel per curve (task and method) with a run history, one colour per
    downstream size N, seeds as thin lines. Caption: :data:`VALIDATION_CAPTION`.

    ``curves``: ``{CurveKey: Curve}`` (as ``table.build_curves`` gives) or a list of curves.
    ``histories``: run_id -> the selected learning rate's history, a list of dicts with
    "epoch", "step" and "val_rel_l2" (the run record's "history" field); runs missing from it
    or with an empty history (zero-shot) are skipped. ``titles``: task -> panel title, by
    default the task in words. With nothing to draw the figure says so."""
    return _save(_validation_figure(curves, histories, titles), path)


# -- test samples ----------------------------------------------------------------------------
def _fields(value: object, what: str) -> np.ndarray:
    """``value`` as fields (S, n, n): (n, n) is one sample; (S, C, n, n) keeps channel 0 (the
    source of an input, the only channel of a target)."""
    a = np.asarray(value, dtype=float)
    if a.ndim == 4:
        a = a[:, 0]
    if a.ndim == 2:
        a = a[None]
    if a.ndim != 3 or a.shape[0] == 0:
        raise PdefmError(f"samples: {what} has shape {np.shape(value)}; expected (S, n, n)")
    return a[:MAX_SAMPLES]


def sample_arrays(samples: dict) -> tuple[np.ndarray, np.ndarray, dict[str, np.ndarray]]:
    """(inputs, truth, predictions) of a samples dict as float arrays (S, n, n), S at most
    :data:`MAX_SAMPLES` (further samples are dropped); one-line PdefmError when a shape does
    not match the truth's."""
    for key in ("inputs", "truth", "predictions"):
        if key not in samples:
            raise PdefmError(f"samples lack {key!r}; give inputs, truth and predictions")
    truth = _fields(samples["truth"], "truth")
    inputs = _fields(samples["inputs"], "inputs")
    preds = {str(k): _fields(v, f"prediction {k!r}") for k, v in samples["predictions"].items()}
    for what, a in [("inputs", inputs), *((f"prediction {k!r}", v) for k, v in preds.items())]:
        if a.shape != truth.shape:
            raise PdefmError(
                f"samples: {what} has shape {a.shape} and truth {truth.shape}; give the same "
                "test samples on the same grid"
            )
    return inputs, truth, preds


def _image(ax, field: np.ndarray, cmap: str, vmin: float, vmax: float):
    """One field as an image with no ticks; returns the image for a colourbar."""
    im = ax.imshow(field.T, origin="lower", cmap=cmap, vmin=vmin, vmax=vmax)
    ax.set_xticks([])
    ax.set_yticks([])
    return im


def _colourbar(fig: Figure, im, axes) -> None:
    """A colourbar beside ``axes`` (one axis or a list sharing the scale), small labels."""
    bar = fig.colorbar(im, ax=axes, shrink=0.8)
    bar.ax.tick_params(labelsize=6)


def _rel_l2(pred: np.ndarray, truth: np.ndarray) -> float:
    return float(np.linalg.norm(pred - truth) / max(np.linalg.norm(truth), 1e-30))


def _samples_row(fig: Figure, axes, x, y, preds: dict[str, np.ndarray], first: bool) -> None:
    """One test sample: input | truth and predictions (one scale) | errors (one scale)."""
    m = len(preds)
    amp = float(np.abs(x).max()) or 1.0  # a source is signed: a symmetric scale around 0
    im = _image(axes[0], x, "RdBu_r", -amp, amp)
    _colourbar(fig, im, axes[0])
    sol = [y, *preds.values()]
    lo, hi = min(float(s.min()) for s in sol), max(float(s.max()) for s in sol)
    for ax, field in zip(axes[1 : 2 + m], sol, strict=True):
        im = _image(ax, field, "viridis", lo, hi)
    _colourbar(fig, im, list(axes[1 : 2 + m]))
    errs = [np.abs(p - y) for p in preds.values()]
    top = max(float(e.max()) for e in errs) or 1.0
    for ax, err, p in zip(axes[2 + m :], errs, preds.values(), strict=True):
        im = _image(ax, err, "magma", 0.0, top)
        ax.text(
            0.03,
            0.97,
            f"rel. L2 {_rel_l2(p, y):.3g}",
            transform=ax.transAxes,
            va="top",
            fontsize=6,
            bbox={"facecolor": "white", "alpha": 0.8, "linewidth": 0, "pad": 1.5},
        )
    _colourbar(fig, im, list(axes[2 + m :]))
    if first:
        titles = ["input: source field", "true solution"]
        titles += [f"{k}: prediction" for k in preds] + [f"{k}: |error|" for k in preds]
        for ax, t in zip(axes, titles, strict=True):
            ax.set_title(t, fontsize=7)


def _samples_figure(samples: dict) -> Figure:
    """The Figure of :func:`samples_panel`."""
    inputs, truth, preds = sample_arrays(samples)
    if not preds:
        raise PdefmError("samples hold no predictions; give at least one method's")
    s, ncols = len(truth), 2 + 2 * len(preds)
    fig = Figure(figsize=(1.9 * ncols + 1.5, 1.9 * s + 0.6), layout="constrained")
    axes = fig.subplots(s, ncols, squeeze=False)
    for i in range(s):
        row_preds = {k: v[i] for k, v in preds.items()}
        _samples_row(fig, axes[i], inputs[i], truth[i], row_preds, first=i == 0)
        axes[i][0].set_ylabel(f"test sample {i + 1}", fontsize=7)
    fig.suptitle(str(samples.get("title", "")), fontsize=9)
    return fig


def samples_panel(samples: dict, path: Path) -> Path:
    """A grid of test samples, one row each: the input source field, the true solution, each
    method's prediction (the truth's colour scale), each method's |prediction - truth| (one
    error scale per row), with colourbars. Caption: :func:`samples_caption`.

    ``samples``: {"title": str, "inputs": (S, n, n), "truth": (S, n, n), "predictions":
    {label: (S, n, n)}} (``pdefm.report.samples.predict_samples`` builds it); (S, 1, n, n)
    arrays are accepted, at most :data:`MAX_SAMPLES` rows are drawn."""
    return _save(_samples_figure(samples), path)
