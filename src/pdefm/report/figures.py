"""The report's figures as PNG files.

matplotlib is used through ``matplotlib.figure.Figure`` (Agg canvas), never ``pyplot``: no
global figure state, no GUI backend, and the caller's backend choice is left alone.
"""

from __future__ import annotations

import math
from collections import defaultdict
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure
from matplotlib.ticker import NullFormatter

from pdefm.report.analysis import shift
from pdefm.report.mixed import ROLES, Comparison
from pdefm.report.table import Curve

STYLE = {"finetune": "-", "scratch": "--", "zero-shot": ":"}
DPI = 110


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
    """Write ``fig`` as PNG and return the path."""
    fig.savefig(path, dpi=DPI, format="png", bbox_inches="tight")  # keep wide legends whole
    return path


def _figure_legend(fig: Figure, axes) -> None:
    """One legend below all panels (labels deduplicated), so no panel's data is covered."""
    seen: dict[str, object] = {}
    for ax in axes:
        for handle, label in zip(*ax.get_legend_handles_labels(), strict=True):
            seen.setdefault(label, handle)
    if seen:
        fig.legend(seen.values(), seen.keys(), loc="outside lower center", ncols=3, fontsize=7)


def _colours(labels: list[str]) -> dict[str, str]:
    """A stable colour per label (tab10 cycled), shared by every panel of a figure."""
    return {lab: f"C{i % 10}" for i, lab in enumerate(dict.fromkeys(labels))}


def _draw_curve(
    ax, curve: Curve, colour: str, x_span: tuple[float, float], label: str | None = None
) -> None:
    """Mean line plus min-max band; zero-shot (N = 0) as a horizontal line across ``x_span``.
    The legend text is ``label``, by default the curve key's."""
    label = label or curve.key.label()
    if curve.key.method == "zero-shot":
        err = float(np.mean([e for es in curve.errors.values() for e in es]))
        ax.hlines(err, *x_span, colors=colour, linestyles=":", label=label)
        return
    n, mean = curve.sizes(), curve.mean()
    lo, hi = curve.spread()
    ax.plot(n, mean, STYLE[curve.key.method], color=colour, marker="o", ms=3, label=label)
    ax.fill_between(n, lo, hi, color=colour, alpha=0.15, linewidth=0)


def error_vs_n(tasks: dict[str, list[Curve]], path: Path) -> Path:
    """Figure 1: test rel L2 vs downstream examples N (log-log), one panel per task."""
    colours = _colours([c.key.label() for cs in tasks.values() for c in cs])
    fig, axes = _grid(len(tasks))
    for ax, (task, curves) in zip(axes, tasks.items(), strict=True):
        sizes = [n for c in curves for n in c.errors if n > 0] or [1, 2]
        for c in curves:
            _draw_curve(ax, c, colours[c.key.label()], (min(sizes), max(sizes)))
        ax.set(xscale="log", yscale="log", title=task, xlabel="downstream examples N")
        ax.set_ylabel("test rel. L2")
    _figure_legend(fig, axes)
    return _save(fig, path)


def mixed_figure(comparisons: list[Comparison], path: Path) -> Path:
    """Mixed vs single-family pre-training: test rel L2 vs N (log-log), one panel per
    comparison (task); one colour per role, shared by its fine-tune line and zero-shot line."""
    colours = _colours(list(ROLES))
    fig, axes = _grid(len(comparisons))
    for ax, comp in zip(axes, comparisons, strict=True):
        curves = comp.curves()
        sizes = [n for _, c in curves for n in c.errors if n > 0] or [1, 2]
        for role, c in curves:
            colour = colours[role.removeprefix("zs_")]  # zero-shot in its model's colour
            _draw_curve(ax, c, colour, (min(sizes), max(sizes)), label=ROLES[role])
        ax.set(xscale="log", yscale="log", xlabel="downstream examples N")
        single = comp.single_init or "—"
        stages = f"mixed {comp.mixed_init} · single {single} · {comp.model}"
        ax.set_title(f"{comp.label}\n{stages}", fontsize=8)
        ax.set_ylabel("test rel. L2")
    _figure_legend(fig, axes)
    return _save(fig, path)


def savings_figure(savings: list[tuple[Curve, Curve, list[dict]]], path: Path) -> Path:
    """Figure 2: savings factor vs target error per task; bounds as triangles (^ '>', v '<')."""
    tasks: dict[str, list] = defaultdict(list)
    for ft, _, res in savings:
        tasks[ft.key.task].append((ft.key.label(), res))
    colours = _colours([lab for items in tasks.values() for lab, _ in items])
    fig, axes = _grid(len(tasks))
    for ax, (task, items) in zip(axes, sorted(tasks.items()), strict=True):
        for label, res in items:
            _draw_savings(ax, res, colours[label], label)
        ax.axhline(1.0, color="grey", lw=0.8)
        ax.set(xscale="log", yscale="log", title=task, xlabel="target test rel. L2")
        ax.set_ylabel("savings N_scratch / N_finetune")
    _figure_legend(fig, axes)
    return _save(fig, path)


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


def model_size(tasks: dict[str, list[Curve]], path: Path) -> Path:
    """Figure 4: test error vs parameter count (log x), one panel per (task, N present)."""
    panels = [(t, n) for t, cs in tasks.items() for n in sorted({n for c in cs for n in c.errors})]
    fig, axes = _grid(len(panels), width=3.2, height=2.6, ncols=4)
    colours = _colours([c.key.label(with_model=False) for cs in tasks.values() for c in cs])
    for ax, (task, n) in zip(axes, panels, strict=True):
        _draw_size_panel(ax, tasks[task], n, colours)
        ax.set(xscale="log", yscale="log", xlabel="parameters")
        ax.set_title(f"{task}, N={n}", fontsize=8)
        ax.xaxis.set_minor_formatter(NullFormatter())  # minor labels overlap on short ranges
        ax.tick_params(labelsize=6)
    axes[0].set_ylabel("test rel. L2")
    _figure_legend(fig, axes)
    return _save(fig, path)


def _draw_size_panel(ax, curves: list[Curve], n: int, colours: dict[str, str]) -> None:
    """One line per method label: mean error at N against params, one point per model."""
    lines: dict[str, list[tuple[int, float]]] = defaultdict(list)
    for c in curves:
        if n in c.errors:
            lines[c.key.label(with_model=False)].append((c.params, float(np.mean(c.errors[n]))))
    for label, pts in lines.items():
        pts.sort()
        style = STYLE[label.split()[0]]
        ax.plot(*zip(*pts, strict=True), style, marker="o", ms=3, color=colours[label], label=label)


def shift_points(rows: list[dict]) -> dict[str, dict[int, dict[float, list[float]]]]:
    """panel ("family · model · mode") -> N -> shift -> test errors of fine-tune runs."""
    out: dict = defaultdict(lambda: defaultdict(lambda: defaultdict(list)))
    for r in rows:
        s = shift(r) if r["method"] == "finetune" else math.nan
        if math.isfinite(s):
            panel = f"{r['family']} · {r['model']} · {r['mode']}"
            out[panel][int(r["n_train"])][round(s, 9)].append(float(r["test_rel_l2"]))
    return out


def shift_figure(points: dict, path: Path) -> Path:
    """Figure 5: mean test error vs OOD shift, one line per N, one panel per family/model/mode."""
    fig, axes = _grid(len(points))
    for ax, (panel, by_n) in zip(axes, sorted(points.items()), strict=True):
        for i, (n, by_shift) in enumerate(sorted(by_n.items())):
            xs = sorted(by_shift)
            ys = [float(np.mean(by_shift[x])) for x in xs]
            ax.plot(xs, ys, "-o", ms=3, color=f"C{i % 10}", label=f"N={n}")
        ax.set(yscale="log", title=panel, xlabel="shift (pre-training widths)")
        ax.set_ylabel("test rel. L2")
        ax.legend(fontsize=6)
    return _save(fig, path)


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


def histograms(datasets: dict[str, dict], path: Path) -> Path:
    """Figure 6: realised parameter histograms, one axis per family; pre-training solid,
    downstream hatched, declared ranges as spans below the axis so the shift is visible.
    Datasets without a declared range (mixtures) are left out."""
    families: dict[str, list] = defaultdict(list)
    for name, d in sorted(ranged(datasets).items()):
        families[d["family"]].append((name, d))
    fig, axes = _grid(len(families), width=5.5, ncols=2)
    for ax, (family, items) in zip(axes, sorted(families.items()), strict=True):
        for i, (name, d) in enumerate(items):
            _draw_hist(ax, name, d, f"C{i % 10}")
        ax.set(title=family, xlabel=items[0][1].get("parameter", "parameter"))
        ax.set_ylabel("density (fraction per unit)")
        ax.legend(fontsize=6)
    return _save(fig, path)


def _draw_hist(ax, name: str, d: dict, colour: str) -> None:
    """One dataset: its histogram (if any) and its declared [low, high] as a thin span."""
    pre = d.get("role") == "pretrain"
    label = f"{name} ({d.get('role', '?')})"
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
