"""Figures of single runs: validation curves per learning-rate-selected run, and test samples
(input, truth, predictions, errors) side by side."""

from __future__ import annotations

import math
from collections import defaultdict
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure

from pdefm.errors import PdefmError
from pdefm.report.figure_kit import (
    LABEL_PT,
    MAX_SAMPLES,
    TICK_PT,
    TITLE_PT,
    curve_labels,
    figure_legend,
    first_column,
    panel_grid,
    plain_log_axis,
    save_figure,
    size_colours,
    style_axes,
    task_titles,
    wrap,
)
from pdefm.report.table import Curve
from pdefm.study.row import ResultRow


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
    for row in sorted(curve.rows, key=lambda r: (int(r.n_train), seed_order(r))):
        xy = _history_xy(histories.get(row.run_id))
        if xy is not None:
            out[int(row.n_train)].append(xy)
    return dict(sorted(out.items()))


def seed_order(row: ResultRow) -> tuple:
    """Sort key of a row's seed: numbers in numeric order (2 before 10), anything else after
    (a row's seed is a whole number; the fallback keeps sorting total for any value)."""
    seed = row.seed
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
            lw=0.8 if thin else 1.6,
            alpha=0.6 if thin else 1.0,
            label=lab,
        )
        best = int(np.argmin(vals))
        ax.plot(steps[best], vals[best], "o", color=colour, ms=5)
    if shared:
        mean = np.mean([v for _, v in runs], axis=0)
        ax.plot(runs[0][0], mean, color=colour, lw=2.2, label=label)


def validation_figure(
    curves, histories: dict[str, list[dict]], titles: dict[str, str] | None = None
) -> Figure:
    """The Figure of :func:`validation_curves`."""
    panels = [(c, h) for c in _curve_list(curves) if (h := _curve_histories(c, histories))]
    if not panels:
        fig, (ax,) = panel_grid(1)
        ax.text(0.5, 0.5, "no validation history recorded", ha="center", va="center",
                fontsize=LABEL_PT)  # fmt: skip
        ax.set_axis_off()
        return fig
    tasks: dict[str, list[Curve]] = defaultdict(list)
    for c, _ in panels:
        tasks[c.key.task].append(c)
    names = {**task_titles(tasks), **(titles or {})}
    labels = curve_labels(c for c, _ in panels)
    colours = size_colours(sorted({n for _, h in panels for n in h}))
    fig, axes = panel_grid(len(panels), sharex=True, sharey=True)
    for ax, (curve, by_n) in zip(axes, panels, strict=True):
        for n, runs in by_n.items():
            _draw_histories(ax, runs, colours[n], f"N = {n}")
        ax.set(xscale="log", yscale="log", xlabel="optimiser step")
        if first_column(ax):  # shared y axis: one label per row
            ax.set_ylabel("validation rel. L2")
        ax.set_title(f"{names[curve.key.task]}\n{labels[curve.key]}")
        style_axes(ax)
    # shared axes: ticks once, after every panel has its data
    plain_log_axis(axes[0], "x")
    plain_log_axis(axes[0], "y")
    legend = "thin: one seed; thick: mean over seeds; dot: lowest validation error (kept)"
    figure_legend(fig, axes, legend, ncols=min(6, len(colours)))
    return fig


def validation_curves(
    curves,
    histories: dict[str, list[dict]],
    path: Path,
    titles: dict[str, str] | None = None,
) -> Path:
    """Validation rel. L2 against optimiser step (log-log), so a reader sees whether training
    converged: one panel per curve (task and method) with a run history, all on shared axes,
    one colour per downstream size N, seeds as thin lines. Caption: :data:`VALIDATION_CAPTION`.

    ``curves``: ``{CurveKey: Curve}`` (as ``table.build_curves`` gives) or a list of curves.
    ``histories``: run_id -> the selected learning rate's history, a list of dicts with
    "epoch", "step" and "val_rel_l2" (the run record's "history" field); runs missing from it
    or with an empty history (zero-shot) are skipped. ``titles``: task -> panel title, by
    default the task in words. With nothing to draw the figure says so."""
    return save_figure(validation_figure(curves, histories, titles), path)


# -- test samples ----------------------------------------------------------------------------
#: Characters per line of a sample panel's column title (an image column is 2.5 inches).
SAMPLE_TITLE_CHARS = 28


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
    bar.ax.tick_params(labelsize=TICK_PT)


def _rel_l2(pred: np.ndarray, truth: np.ndarray) -> float:
    return float(np.linalg.norm(pred - truth) / max(np.linalg.norm(truth), 1e-30))


def input_scale(x: np.ndarray) -> tuple[str, float, float]:
    """Colour map and range of an input panel: a signed field (a source) on a diverging map
    symmetric around 0; a field of one sign (a coefficient a(x) > 0) on a sequential map over
    its own range, where a symmetric one would spend half the colours on values it never takes."""
    lo, hi = float(x.min()), float(x.max())
    if lo < 0 < hi or lo == hi:
        amp = max(abs(lo), abs(hi)) or 1.0
        return "RdBu_r", -amp, amp
    return "cividis", lo, hi


def _samples_row(
    fig: Figure, axes, x, y, preds: dict[str, np.ndarray], first: bool, input_name: str = "source"
) -> None:
    """One test sample: input | truth and predictions (one scale) | errors (one scale)."""
    m = len(preds)
    im = _image(axes[0], x, *input_scale(x))
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
            fontsize=TICK_PT,
            bbox={"facecolor": "white", "alpha": 0.8, "linewidth": 0, "pad": 1.5},
        )
    _colourbar(fig, im, list(axes[2 + m :]))
    if first:
        titles = [f"input: {input_name} field", "true solution"]
        titles += [f"{k}: prediction" for k in preds] + [f"{k}: |error|" for k in preds]
        for ax, t in zip(axes, titles, strict=True):
            ax.set_title(wrap(t, SAMPLE_TITLE_CHARS), fontsize=LABEL_PT)


def samples_figure(samples: dict) -> Figure:
    """The Figure of :func:`samples_panel`."""
    inputs, truth, preds = sample_arrays(samples)
    if not preds:
        raise PdefmError("samples hold no predictions; give at least one method's")
    s, ncols = len(truth), 2 + 2 * len(preds)
    fig = Figure(figsize=(2.5 * ncols + 2.0, 2.5 * s + 1.0), layout="constrained")
    axes = fig.subplots(s, ncols, squeeze=False)
    for i in range(s):
        row_preds = {k: v[i] for k, v in preds.items()}
        name = samples.get("input_name", "source")
        _samples_row(fig, axes[i], inputs[i], truth[i], row_preds, first=i == 0, input_name=name)
        axes[i][0].set_ylabel(f"test sample {i + 1}", fontsize=LABEL_PT)
    fig.suptitle(str(samples.get("title", "")), fontsize=TITLE_PT + 1)
    return fig


def samples_panel(samples: dict, path: Path) -> Path:
    """A grid of test samples, one row each: the input field shown (the source, or for a
    constant forcing the coefficient field), the true solution, each
    method's prediction (the truth's colour scale), each method's |prediction - truth| (one
    error scale per row), with colourbars. Caption: :func:`samples_caption`.

    ``samples``: {"title": str, "inputs": (S, n, n), "truth": (S, n, n), "predictions":
    {label: (S, n, n)}} (``pdefm.report.samples.predict_samples`` builds it); (S, 1, n, n)
    arrays are accepted, at most :data:`MAX_SAMPLES` rows are drawn."""
    return save_figure(samples_figure(samples), path)
