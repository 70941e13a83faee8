"""What every report figure shares: the panel grid, saving to PNG, legends and colours, curve
and task labels in words, captions, and plain-decimal log ticks (matplotlib ``Figure`` only,
never ``pyplot``)."""

from __future__ import annotations

import io
import math
from collections import Counter, defaultdict
from collections.abc import Iterable
from pathlib import Path

from matplotlib import colormaps
from matplotlib.figure import Figure
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
def panel_grid(n_panels: int, width: float = 4.2, height: float = 3.3, ncols: int = 3):
    """A figure with n panels on a grid of at most ``ncols`` columns; returns (fig, axes)."""
    ncols = max(1, min(ncols, n_panels))
    nrows = math.ceil(n_panels / ncols)
    fig = Figure(figsize=(width * ncols, height * nrows), layout="constrained")
    axes = fig.subplots(nrows, ncols, squeeze=False).ravel()
    for ax in axes[n_panels:]:
        ax.set_visible(False)
    return fig, axes[:n_panels]


def save_figure(fig: Figure, path: Path) -> Path:
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


def figure_legend(fig: Figure, axes, title: str | None = None, ncols: int = 2) -> None:
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


def error_vs_n_caption(tasks: dict[str, list[Curve]]) -> str:
    """Caption of :func:`error_vs_n` for these curves (seed counts from the data)."""
    return (
        "Test rel. L2 against the number of downstream training examples N (log-log), one "
        f"panel per task; {LINE_STYLES_TEXT}. {_sentence(seeds_note(all_curves(tasks)))}"
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
