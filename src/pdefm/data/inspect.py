"""`pdefm inspect`: a dataset's card in a few lines, a figure of examples and parameter
histograms, and optionally a full re-hash against the card. Imports no torch."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from pdefm.catalogue import SPLITS
from pdefm.checks import check_int
from pdefm.data import store
from pdefm.data.card import DatasetCard, load_card
from pdefm.data.io import temp_path
from pdefm.data.writer import split_hash
from pdefm.errors import PdefmError

MAX_EXAMPLES = 32


def inspect_dataset(
    root: str | Path, png: str | Path | None = None, n_examples: int = 4, verify: bool = False
) -> str:
    """Summarise the dataset in ``root``, write the figure, return the summary text.

    Everything is checked before the figure is written, and the figure is written to a
    temporary file renamed into place, so a refusal or a failure leaves no PNG behind."""
    check_int(n_examples, "--examples", minimum=1, maximum=MAX_EXAMPLES)
    root = Path(root)
    if png is not None:
        png = _check_png(Path(png))
    card = load_card(root)  # before the default figure path: it lives in the dataset folder
    if png is None:
        png = _check_png(root / "inspect.png")
    with _card_fields(root):
        lines = summary_lines(card)
        if verify:
            lines.append(verify_hashes(root, card))
        if card.count("train") == 0:
            raise PdefmError(f"{root} has no train samples to plot; regenerate the dataset")
        tmp = temp_path(png)
        try:
            plot_dataset(root, card, tmp, n_examples)
            os.replace(tmp, png)
        except OSError as exc:
            raise PdefmError(
                f"cannot write the figure {png} ({exc.strerror or exc}); pass --png PATH"
            ) from None
        finally:
            tmp.unlink(missing_ok=True)
    lines.append(f"figure: {png}")
    return "\n".join(lines)


def _boundary_text(sides: dict[str, str]) -> str:
    """ "periodic" when every side agrees, else "x periodic, y_low dirichlet, ..."."""
    if len(set(sides.values())) == 1:
        return next(iter(sides.values()))
    per_axis = []
    for axis in ("x", "y"):
        low, high = sides[f"{axis}_low"], sides[f"{axis}_high"]
        per_axis += [f"{axis} {low}"] if low == high else [f"{axis}_low {low}, {axis}_high {high}"]
    return ", ".join(per_axis)


def _inputs_text(card) -> str:
    """Input names, fields marked: "source (field), diffusion_xx (field), diffusion_xy"."""
    fields = set(card.field_channels)
    return ", ".join(f"{c} (field)" if c in fields else c for c in card.input_channels)


def _check_png(png: Path) -> Path:
    """Where the figure goes: a .png file whose folder exists."""
    if png.suffix.lower() != ".png":
        raise PdefmError(f"--png {png} must end in .png; e.g. --png {png.with_suffix('.png')}")
    if png.is_dir():
        raise PdefmError(f"--png {png} is a directory; give a file name such as {png}/inspect.png")
    if not png.parent.is_dir():
        raise PdefmError(
            f"--png {png}: the folder {png.parent} does not exist; create it or choose another"
        )
    return png


@contextlib.contextmanager
def _card_fields(root: Path) -> Iterator[None]:
    """A card field that the reader needs but is missing or of the wrong type is a one-line
    error naming the card (check_card covers the fields every reader uses; this the rest)."""
    path = root / "card.json"
    try:
        yield
    except KeyError as exc:
        missing = exc.args[0] if exc.args else "?"
        raise PdefmError(f"{path} lacks the field {missing!r}; regenerate the dataset") from None
    except (TypeError, ValueError, IndexError, AttributeError) as exc:
        raise PdefmError(
            f"{path} holds a malformed field ({exc}); regenerate the dataset"
        ) from None


def summary_lines(card: DatasetCard) -> list[str]:
    if card.is_mixture:
        return _mixture_lines(card)
    p = card.parameter
    declared = card.declared
    n = card.resolution
    lines = [
        f"{card.family}: {card.equation}",
        f"  parameter {p['name']} ({p['description']}), declared "
        f"{declared['kind']} on [{declared['low']:g}, {declared['high']:g}]"
        + (f", support {declared['support']}" if "support" in declared else ""),
        f"  grid {n}x{n} {_boundary_text(card.boundary)}; inputs "
        f"{_inputs_text(card)}; output {', '.join(card.output_channels)}",
        "  samples "
        + ", ".join(f"{s} {card.count(s)}" for s in SPLITS)
        + f"; seed {card.seed}; generator v{card.generator_version}",
    ]
    for split in SPLITS:
        r = card.realised(split)["parameter"]
        inside = "all inside" if r["inside_declared_range"] else "NOT all inside"
        lines.append(
            f"  {split:5s} {p['name']} realised min {r['min']:.4g} max {r['max']:.4g} "
            f"mean {r['mean']:.4g} ({inside} the declared range)"
        )
    acc = card.realised("train").get("acceptance")
    if acc:
        rates = ", ".join(f"{k}: {v['rate']:.2f}" for k, v in acc.items())
        lines.append(f"  train acceptance per {p['name']} (accepted / sources drawn): {rates}")
    solver = [(split, card.realised(split).get("solver")) for split in SPLITS]
    if all(entry for _, entry in solver):
        worst = max(entry["max_relative_residual"] for _, entry in solver)
        most = max(entry["max_iterations"] for _, entry in solver)
        lines.append(
            f"  solver: every sample's relative residual <= {worst:.2g} (max {most} PCG iterations)"
        )
    for warning in card.warnings:
        lines.append(f"  warning: {warning}")
    norm = card.normalisation
    lines.append(
        f"  train median source norm {norm['source_norm']['median']:.4g}, "
        f"median solution norm {norm['solution_norm']['median']:.4g}"
    )
    lines.append(f"  regenerate: {card.command}")
    return lines


def _mixture_lines(card: DatasetCard) -> list[str]:
    n = card.resolution
    lines = [
        f"mixture of {', '.join(card.families)}",
        f"  grid {n}x{n} periodic; inputs {', '.join(card.input_channels)}",
        "  samples " + ", ".join(f"{s} {card.count(s)}" for s in SPLITS),
    ]
    for m, count in zip(card.members, card.realised("train")["members"], strict=True):
        lines.append(f"  member {m.path} ({m.family}, weight {m.weight:g}): {count} train")
    lines.append(f"  regenerate: {card.command}")
    return lines


def verify_hashes(root: Path, card: DatasetCard) -> str:
    """Re-hash every split block by block and compare with the card's content hashes."""
    for split in SPLITS:
        count = card.count(split)
        with store.open_split(card.split_file(split), count) as h5:
            digest = split_hash(h5, count, card.block_size)
        if digest != card.content_hash[split]:
            raise PdefmError(
                f"{split} split of {root} does not match its card's content hash; "
                f"regenerate it with: {card.command}"
            )
    return "  verified: every split matches the card's content hash"


def plot_dataset(root: Path, card: DatasetCard, png: Path, n_examples: int) -> None:
    """Rows of examples from the train split (the source, each distinct input field, the
    solution) plus parameter histograms."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    count = card.count("train")
    n_examples = max(1, min(n_examples, count))
    name = card.parameter_name
    with store.open_split(card.split_file("train"), count) as h5:
        index = np.linspace(0, count - 1, n_examples).round().astype(int)
        fields = store.read_fields(h5, index)
        params = h5["parameter"][...]
    rows = _plotted_rows(fields, card.field_channels[1:])
    height = len(rows)
    fig, axes = plt.subplots(
        height, n_examples + 1, figsize=(3 * (n_examples + 1), 3 * height), squeeze=False
    )
    for col, i in enumerate(index):
        for row, (label, key) in enumerate(rows):
            ax = axes[row, col]
            im = ax.imshow(fields[key][col].T, origin="lower", extent=(0, 1, 0, 1), cmap="RdBu_r")
            ax.set_title(f"{label} #{i}, {name} = {params[i]:.3g}", fontsize=9)
            ax.set_xticks([])
            ax.set_yticks([])
            fig.colorbar(im, ax=ax, fraction=0.046)
    _plot_histogram(axes[0, -1], card)
    for row in range(1, height):
        axes[row, -1].axis("off")
    axes[-1, -1].text(0, 0.5, "\n".join(summary_lines(card)[:4]), fontsize=7, wrap=True)
    fig.suptitle(f"{root.name}: {card.family}" + _declared_text(card))
    fig.tight_layout()
    fig.savefig(png, dpi=80, format="png")
    plt.close(fig)


def _plotted_rows(fields: dict[str, np.ndarray], extra: list[str]) -> list[tuple[str, str]]:
    """(label, key of ``fields``) per plotted row: the source, each input field that is not a
    copy of an earlier one (darcy's diffusion_yy repeats diffusion_xx), the solution."""
    rows = [("source", "source")]
    for name in extra:
        key = f"{store.FIELD_GROUP}/{name}"
        if not any(np.array_equal(fields[key], fields[k]) for _, k in rows):
            rows.append((name, key))
    return [*rows, ("solution", "solution")]


def _declared_text(card: DatasetCard) -> str:
    declared = card.declared
    if declared["low"] is None:
        return f" ({', '.join(card.families)})"
    return f", {card.parameter_name} in [{declared['low']:g}, {declared['high']:g}]"


def _plot_histogram(ax, card: DatasetCard) -> None:
    if card.is_mixture:
        families = card.realised("train")["families"]
        ax.bar(list(families), list(families.values()))
        ax.set_title("train samples per family")
        return
    declared = card.declared
    for split in SPLITS:
        r = card.realised(split)["parameter"]
        if "counts" in r:
            keys = list(r["counts"])
            ax.plot(
                [float(k) for k in keys], [r["counts"][k] / r["n"] for k in keys], "o-", label=split
            )
        else:
            edges = np.asarray(r["histogram"]["edges"])
            dens = np.asarray(r["histogram"]["counts"]) / r["n"]
            ax.stairs(dens, edges, label=split)
    ax.axvspan(declared["low"], declared["high"], color="0.9", zorder=-1, label="declared")
    ax.set_xlabel(card.parameter_name)
    ax.set_ylabel("share of samples")
    ax.set_title("realised parameter")
    ax.legend(fontsize=7)
