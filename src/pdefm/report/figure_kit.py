"""What every report figure shares: the panel grid, saving to PNG and SVG, slide-size text,
legends and colours, hollow markers of points that may still move, curve and task labels in
words, captions, and plain-decimal log ticks (matplotlib ``Figure`` only, never ``pyplot``)."""

from __future__ import annotations

import io
import math
import textwrap
from collections import Counter, defaultdict
from collections.abc import Iterable
from pathlib import Path

from matplotlib import colormaps, rc_context
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.ticker import FixedFormatter, FixedLocator, MaxNLocator, NullFormatter

from pdefm.report.mixed import Comparison
from pdefm.report.names import (
    method_label,
    plain_number,
    row_task_title,
)
from pdefm.report.table import Curve, CurveKey
from pdefm.study.row import ResultRow

STYLE = {"finetune": "-", "scratch": "--", "zero-shot": ":"}


DPI = 110


#: Text sizes in points at the saved size, so that a figure pasted on a slide stays readable.
TICK_PT = 11
LABEL_PT = 11
LEGEND_PT = 11
TITLE_PT = 12


#: Height of one legend row at LEGEND_PT, in inches (text plus the spacing between rows).
LEGEND_ROW_IN = 0.25


#: Characters per line of a panel title before it wraps (a panel is about 5 inches wide).
TITLE_CHARS = 48


#: Line width of a fitted law: thinner than the mean line of the data it was fitted to.
FIT_LW = 1.0
MEAN_LW = 1.8


#: Marker size of the mean points (large enough that a hollow one reads as hollow).
MARKER_MS = 6


#: Fixed salt of the ids matplotlib writes into SVG: rewriting a report gives the same bytes.
SVG_SALT = "pdefm-report"


#: Why a point is drawn hollow (its value may still move), as the legend says it.
HOLLOW = {
    "budget-limited": "budget-limited (still improving)",
    "unsettled": "unsettled",
}


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
def panel_grid(
    n_panels: int,
    width: float = 5.2,
    height: float = 3.9,
    ncols: int = 3,
    sharex: bool = False,
    sharey: bool = False,
):
    """A figure with n panels on a grid of at most ``ncols`` columns; returns (fig, axes).
    Panels that compare one quantity share their axes (``sharex`` / ``sharey``): the same
    limits and ticks, tick labels only on the outer panels."""
    ncols = max(1, min(ncols, n_panels))
    nrows = math.ceil(n_panels / ncols)
    fig = Figure(figsize=(width * ncols, height * nrows), layout="constrained")
    axes = fig.subplots(nrows, ncols, squeeze=False, sharex=sharex, sharey=sharey).ravel()
    for ax in axes[n_panels:]:
        ax.set_visible(False)
    # a panel above an empty slot is the bottom of its column: it needs its x tick labels
    for ax in axes[max(0, n_panels - ncols) : n_panels]:
        ax.xaxis.set_tick_params(labelbottom=True)
    return fig, axes[:n_panels]


def first_column(ax) -> bool:
    """True for a panel in the grid's first column (the one that carries a shared y label)."""
    spec = ax.get_subplotspec()
    return spec is None or spec.is_first_col()


def wrap(text: str, width: int = TITLE_CHARS) -> str:
    """``text`` with each of its lines wrapped at ``width`` characters (titles stay inside
    their panel at slide-size fonts)."""
    return "\n".join(textwrap.fill(line, width) for line in text.split("\n"))


def style_axes(ax) -> None:
    """Slide-size text on one panel: tick labels, axis labels and the title (wrapped)."""
    ax.tick_params(which="both", labelsize=TICK_PT)
    ax.xaxis.label.set_fontsize(LABEL_PT)
    ax.yaxis.label.set_fontsize(LABEL_PT)
    ax.set_title(wrap(ax.get_title()), fontsize=TITLE_PT)


def save_figure(fig: Figure, path: Path) -> Path:
    """Write ``fig`` as a 256-colour PNG at ``path`` and as SVG next to it (same stem,
    ``.svg``, for slides and print); return the PNG's path. The palette keeps the PNGs small
    (a third to a quarter of the RGBA size) for reports kept in a repository; line plots and
    colour maps of 256 levels lose nothing visible."""
    from PIL import Image  # matplotlib's own dependency

    path = Path(path)
    buffer = io.BytesIO()
    fig.savefig(buffer, dpi=DPI, format="png", bbox_inches="tight")  # keep wide legends whole
    buffer.seek(0)
    with Image.open(buffer) as image:
        small = image.convert("RGB").quantize(colors=256, method=Image.Quantize.MEDIANCUT)
        small.save(path, format="PNG", optimize=True)
    save_svg(fig, path.with_suffix(".svg"))
    return path


def save_svg(fig: Figure, path: Path) -> Path:
    """Write ``fig`` as SVG, byte-identical when redrawn from the same data: a fixed id salt
    (``svg.hashsalt``, else random per process) and no date in the metadata."""
    with rc_context({"svg.hashsalt": SVG_SALT}):
        fig.savefig(path, format="svg", bbox_inches="tight", metadata={"Date": None})
    return Path(path)


def figure_legend(
    fig: Figure,
    axes,
    title: str | None = None,
    ncols: int | None = None,
    extra: dict[str, object] | None = None,
) -> None:
    """One legend below all panels (labels deduplicated), so no panel's data is covered;
    ``title`` explains what lines and bands are, ``extra`` (label -> handle) adds entries
    that no panel labels (fit, hollow markers). By default as many columns as the grid has
    panel columns, at most two: long labels at slide size would not fit more."""
    seen: dict[str, object] = {}
    for ax in axes:
        for handle, label in zip(*ax.get_legend_handles_labels(), strict=True):
            seen.setdefault(label, handle)
    seen.update(extra or {})
    if ncols is None:
        spec = axes[0].get_subplotspec() if len(axes) else None
        ncols = min(2, spec.get_gridspec().ncols if spec is not None else 1)
    if not seen:
        return
    # the figure grows by the legend's height: the layout would squeeze the panels instead
    rows = math.ceil(len(seen) / ncols) + (1 if title else 0)
    fig.set_figheight(fig.get_figheight() + LEGEND_ROW_IN * rows + 0.2)
    fig.legend(
        seen.values(),
        seen.keys(),
        loc="outside lower center",
        ncols=ncols,
        fontsize=LEGEND_PT,
        title=title,
        title_fontsize=LEGEND_PT,
    )


# -- hollow points and fits ------------------------------------------------------------------
def hollow_points(curve: Curve, unsettled: set[tuple] | None = None) -> dict[int, str]:
    """N -> why the mean point of ``curve`` at N is drawn hollow: "budget-limited" when a run
    at N has ``converged`` False (validation was still improving when the budget ran out),
    else "unsettled" when ``(curve.key, N)`` is in ``unsettled`` (a later check found the point
    not settled). Points not listed are drawn filled. Read from row attributes only."""
    marks = unsettled or set()
    out = {}
    for n in sorted(curve.errors):
        if any(r.converged is False for r in curve.rows if int(r.n_train) == n):
            out[n] = "budget-limited"
        elif (curve.key, n) in marks:
            out[n] = "unsettled"
    return out


def hollow_legend(kinds: Iterable[str]) -> dict[str, Line2D]:
    """Legend entries (label -> grey hollow circle) for the kinds of hollow point drawn."""
    return {
        HOLLOW[k]: Line2D([], [], ls="none", marker="o", ms=MARKER_MS, mfc="none", mec="0.3")
        for k in HOLLOW
        if k in set(kinds)
    }


def fit_legend() -> dict[str, Line2D]:
    """The legend entry of the fitted laws: a thin grey line (each fit is in its curve's colour)."""
    return {"fit": Line2D([], [], color="0.3", lw=FIT_LW)}


def label_colours(labels: list[str]) -> dict[str, str]:
    """A stable colour per label (tab10 cycled), shared by every panel of a figure."""
    return {lab: f"C{i % 10}" for i, lab in enumerate(dict.fromkeys(labels))}


def size_colours(sizes: list[int]) -> dict[int, tuple]:
    """A colour per N from a sequential map (dark: few examples, light: many), the yellow end
    left out so that the lightest line is still visible on white."""
    cmap = colormaps["viridis"]
    k = len(sizes)
    return {n: cmap(0.85 * i / max(k - 1, 1)) for i, n in enumerate(sizes)}


# -- words ---------------------------------------------------------------------------------
def first_row(curve: Curve) -> ResultRow | None:
    """A row of the curve (they share task and init), or None for a curve built by hand."""
    return curve.rows[0] if curve.rows else None


def curve_labels(curves: Iterable[Curve], with_model: bool = True) -> dict[CurveKey, str]:
    """Legend text per curve key (:func:`~pdefm.report.names.method_label`). Two different
    inits of the same model with the same pre-training data would read alike: then every
    curve with that text gets its stage name appended. Without the model in the text, one
    stage per model (a size ladder) reads alike on purpose: those curves join into one line."""
    curves = list(curves)
    labels = {c.key: method_label(c.key, first_row(c), with_model) for c in curves}
    # distinct (method, init, mode) of one model sharing a text; across tasks is fine
    owners: dict[tuple[str, str], set] = defaultdict(set)
    for k, text in labels.items():
        owners[text, k.model].add((k.method, k.init, k.mode))
    clash = {text for (text, _), idents in owners.items() if len(idents) > 1}
    return {
        k: f"{text} [stage {k.init}]" if text in clash and k.init != "scratch" else text
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


def all_curves(tasks: dict[str, list[Curve]]) -> list[Curve]:
    return [c for cs in tasks.values() for c in cs]


def error_vs_n_caption(tasks: dict[str, list[Curve]], unsettled: set[tuple] | None = None) -> str:
    """Caption of :func:`error_vs_n` for these curves (seed counts and hollow points from the
    data; ``unsettled`` as there)."""
    curves = all_curves(tasks)
    return (
        "Test rel. L2 against the number of downstream training examples N (log-log), one "
        f"panel per task, all on the same axes; {LINE_STYLES_TEXT}; thin solid line: the "
        "fitted law err = a N^-b + c, drawn over the sizes it was fitted to. "
        f"{_sentence(seeds_note(curves))}{hollow_caption(curves, unsettled)}"
    )


def hollow_caption(curves: Iterable[Curve], unsettled: set[tuple] | None = None) -> str:
    """' Hollow markers: ...' for the kinds of hollow point among ``curves`` ('' for none)."""
    kinds = {k for c in curves for k in hollow_points(c, unsettled).values()}
    why = {
        "budget-limited": "a run at that N was budget-limited (validation still improving "
        "when its budget ran out), so more budget would lower the point",
        "unsettled": "the point is not settled (a later check found it could still move)",
    }
    parts = [why[k] for k in HOLLOW if k in kinds]
    return f" Hollow markers: {'; or '.join(parts)}." if parts else ""


def mixed_caption(comparisons: list[Comparison]) -> str:
    """Caption of :func:`mixed_figure` for these comparisons (seed counts from the data)."""
    curves = [c for comp in comparisons for _, c in comp.curves()]
    return (
        "Test rel. L2 against N per task: fine-tuned from the mixed pre-training and from the "
        "pre-training on the task's own family (solid), trained from scratch with the mixed "
        "model's preset (dashed), zero-shot of both pre-trained models (dotted). "
        f"{_sentence(seeds_note(curves))}{hollow_caption(curves)}"
    )


def samples_caption(samples: dict) -> str:
    """Caption of :func:`samples_panel`; names the run behind each column label when
    ``samples`` carries ``details`` (label -> method in words, as ``predict_samples`` gives)."""
    name = samples.get("input_name", "source")
    text = (
        f"Rows: test samples. Columns: the {name} field (input), the true solution, each "
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


def plain_log_axis(ax, which: str = "y") -> None:
    """Plain decimal ticks (0.01, 0.03, 0.1) on a log axis. Call it after drawing: it freezes
    the limits the data gave (widened to a tick just outside them)."""
    axis = ax.yaxis if which == "y" else ax.xaxis
    get, set_ = (ax.get_ylim, ax.set_ylim) if which == "y" else (ax.get_xlim, ax.set_xlim)
    lo, hi = sorted(get())
    ticks = log_ticks(lo, hi)
    _set_ticks(axis, ticks, [_tick_text(t) for t in ticks])
    set_(min([lo, *ticks]), max([hi, *ticks]))


def count_axis(axis, values: Iterable[float], text=None) -> None:
    """Ticks at exactly the counts that were run (N, parameters), labelled as integers."""
    ticks = sorted({int(v) for v in values if v > 0})
    _set_ticks(axis, ticks, [(text or str)(t) for t in ticks])


def params_text(p: int) -> str:
    """A parameter count in short: 9000 -> "9k", 1_030_000 -> "1.03M"."""
    if p >= 1e6:
        return f"{p / 1e6:.3g}M"
    return f"{p / 1e3:.3g}k" if p >= 1e3 else str(p)
