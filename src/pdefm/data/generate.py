"""Generate a dataset: the block source of generated data (``blocks.py`` computes each block,
``writer.py`` writes, resumes and finishes it), the refusals that come before any writing, and
the card of a generated dataset. Memory holds one block whatever the split size.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from pdefm import __version__
from pdefm.data import card as cards
from pdefm.data import stats, store, writer
from pdefm.data.blocks import Block, UnsampleableError, generate_block, redraw_budget
from pdefm.data.probe import (
    MAX_DRAWS,
    STOP_AFTER,
    ValueProbe,
    probe_resolution,
)
from pdefm.data.spec import SPLITS, GenerationSpec
from pdefm.data.unsampleable import exhausted_message, resolve_unsampleable
from pdefm.data.writer import BlockHook, SplitLayout
from pdefm.errors import PdefmError


def generate_dataset(
    spec: GenerationSpec,
    out: str | Path,
    *,
    drop_unsampleable: bool = False,
    progress: bool = True,
    on_block: BlockHook | None = None,
) -> cards.DatasetCard:
    """Generate (or finish, or find already finished) the dataset ``spec`` in ``out``.

    Returns the card. Every refusal (bad spec, output in the way, not enough memory or disk,
    a parameter value that cannot be sampled within its redraw budget) comes before ``out``
    is created. ``drop_unsampleable`` removes such values (Helmholtz w next to a resonance,
    whose measured acceptance is too low for the budget) from the declared law instead of
    failing; the card records it. ``on_block(split, block)`` is called after each block is
    durable.
    """
    if not isinstance(spec, GenerationSpec):
        raise PdefmError(f"spec must be a GenerationSpec, got {type(spec).__name__}")
    spec.validate()
    out = Path(out)
    writer.check_out(out)
    if not (out / cards.CARD_NAME).is_file():
        written = sum(f.stat().st_size for f in out.glob("*.h5*")) if out.is_dir() else 0
        spec.check_resources(out, written)
    spec, probes, warnings = resolve_unsampleable(spec, drop_unsampleable)
    source = GeneratedSource(spec, probes, warnings)
    try:
        return writer.write_dataset(source, out, progress=progress, on_block=on_block)
    except UnsampleableError as exc:  # found late; the writer removed what this call made
        raise PdefmError(exhausted_message(spec, exc, probes)) from None


@dataclass
class GeneratedSource:
    """The block source of a generated dataset (see ``writer.BlockSource``)."""

    gen_spec: GenerationSpec
    probes: dict[float, ValueProbe]
    warnings: list[str]
    kind = "generated"
    refusals = (UnsampleableError,)

    @property
    def spec(self) -> dict:
        return self.gen_spec.to_dict()

    @property
    def guard(self) -> dict:
        return {}

    @property
    def command(self) -> str:
        return self.gen_spec.command()

    @property
    def desc(self) -> str:
        n = self.gen_spec.resolution
        return f"generate {self.gen_spec.family} {n}x{n}"

    def matches(self, spec: dict) -> bool:
        return GenerationSpec.from_dict(spec, "the dataset's spec") == self.gen_spec

    def layout(self, split: str) -> SplitLayout:
        pde = self.gen_spec.pde()
        return SplitLayout(
            count=self.gen_spec.count(split),
            block_size=self.gen_spec.block_size,
            resolution=self.gen_spec.resolution,
            n_channels=len(pde.coefficient_channels),
            coefficient_names=tuple(pde.coefficient_names),
            fields=tuple(pde.field_channels),
        )

    @contextlib.contextmanager
    def reading(self, split: str) -> Iterator[writer.BlockReader]:
        with _one_core_for_the_writer():
            yield lambda block: _block_arrays(generate_block(self.gen_spec, split, block))

    def card(self, out: Path, hashes: dict[str, str]) -> dict:
        return _build_card(self.gen_spec, out, hashes, self.probes, self.warnings)


@contextlib.contextmanager
def _one_core_for_the_writer() -> Iterator[None]:
    """Leave one core to the writer thread while blocks are computed. torch's intra-op
    threads wait for their slowest member, so a writer competing with them for every core
    slowed block compute 3.6x on 2 cores; with one core left to it, compute is unaffected."""
    threads = torch.get_num_threads()
    torch.set_num_threads(max(1, threads - 1))
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def _block_arrays(block: Block) -> dict[str, np.ndarray]:
    """A block's rows in the on-disk layout (see ``store``)."""
    arrays = {
        "source": block.source.to(torch.float32).numpy(),
        "solution": block.solution.to(torch.float32).numpy(),
        "channels": block.channels.numpy(),
        "parameter": block.parameter.numpy(),
        "sparsity": block.sparsity.numpy(),
        "attempts": block.attempts.numpy(),
        "source_norm": block.source.square().mean(dim=(-2, -1)).sqrt().numpy(),
        "solution_norm": block.solution.square().mean(dim=(-2, -1)).sqrt().numpy(),
    }
    arrays.update({f"coefficients/{k}": v.numpy() for k, v in block.coefficients.items()})
    for name, field in block.fields.items():
        arrays[f"{store.FIELD_GROUP}/{name}"] = field.to(torch.float32).numpy()
        arrays[f"{store.FIELD_NORM_GROUP}/{name}"] = (
            field.square().mean(dim=(-2, -1)).sqrt().numpy()
        )
    return arrays


# -- the card ----------------------------------------------------------------------------------
def _build_card(
    spec: GenerationSpec, out: Path, hashes: dict[str, str], probe: dict, warnings: list
) -> dict:
    pde = spec.pde()
    declared = pde.declared_distribution(spec.low, spec.high)
    realised, normalisation = {}, {}
    for split in SPLITS:
        with store.open_split(out / f"{split}.h5", spec.count(split)) as h5:
            vectors = store.read_vectors(h5)
        realised[split] = _realised(vectors, declared, spec)
        if split == "train":
            normalisation = stats.normalisation_stats(
                vectors, list(pde.coefficient_channels), list(pde.field_channels)
            )
    return {
        "format": cards.CARD_FORMAT,
        "format_version": cards.CARD_VERSION,
        "pdefm_version": __version__,
        "generator_version": spec.generator_version,
        "family": spec.family,
        "equation": pde.equation,
        "family_config": pde.config(),
        "parameter": {**pde.parameter.__dict__, "declared": declared},
        "grid": pde.grid_entry(spec.resolution),
        "channels": {
            "inputs": list(pde.input_channels),
            "fields": ["source", *pde.field_channels],
            "outputs": ["solution"],
        },
        "source_law": spec.source.to_dict() | {"normalise": "max", "remove_mean": pde.remove_mean},
        "seed": spec.seed,
        "split_seeds": {s: spec.split_seed(s) for s in SPLITS},
        "counts": {s: spec.count(s) for s in SPLITS},
        "files": {s: f"{s}.h5" for s in SPLITS},
        "content_hash": hashes,
        "realised": realised,
        "acceptance_probe": _probe_entry(spec, probe),
        "normalisation": normalisation,
        "warnings": warnings,
        "command": spec.command(),
        "spec": spec.to_dict(),
        "created_utc": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
    }


def _probe_entry(spec: GenerationSpec, probes: dict[float, ValueProbe]) -> dict:
    """The probe's settings and per-value counts (empty values for continuous laws)."""
    return {
        "grid": probe_resolution(spec),
        "max_draws_per_level": MAX_DRAWS,
        "stop_after_accepted": STOP_AFTER,
        "redraw_budget": redraw_budget(spec.pde()),
        "values": {f"{v:g}": probe.to_dict() for v, probe in probes.items()},
    }


def _realised(vectors: dict, declared: dict, spec: GenerationSpec) -> dict:
    levels = spec.source.sparsity_levels
    out = {
        "parameter": stats.parameter_summary(vectors["parameter"], declared),
        "sparsity_counts": {f"{v:g}": int((vectors["sparsity"] == v).sum()) for v in levels},
    }
    if (vectors["attempts"] > 1).any() or declared["kind"] == "uniform_integer":
        out["acceptance"] = stats.acceptance_summary(vectors["parameter"], vectors["attempts"])
    if "coefficients/pcg_residual" in vectors:  # an iterative solve: how well it converged
        out["solver"] = {
            "max_relative_residual": float(vectors["coefficients/pcg_residual"].max()),
            "mean_iterations": float(vectors["coefficients/pcg_iterations"].mean()),
            "max_iterations": int(vectors["coefficients/pcg_iterations"].max()),
        }
    return out
