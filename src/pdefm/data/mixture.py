"""Mixtures of datasets: one dataset that draws from several (mixed-physics pre-training, the
study's SYS-4), with every member's inputs mapped onto one union channel layout.

The union layout is fixed (:func:`pdefm.catalogue.union_order`; for the built-in families)::

    source, diffusion_xx, diffusion_yy, diffusion_xy, velocity_x, velocity_y,
    helmholtz_c, helmholtz_w                       (then any other channel, first seen first)

A coefficient a family lacks is 0, as in the study. With ``masks`` every coefficient channel X
also gets a presence channel ``has_X`` (1 where the sample's family has X, else 0), so that a
zero coefficient and a missing one differ. The mixture is materialised: a normal pdefm dataset
(same HDF5 layout, plus the per-sample ``member`` and ``origin_row`` vectors) whose card lists
the members with their content hashes and records normalisation statistics per family. Imports
no torch.

Each split takes round(w_k / sum(w) * n) samples from member k (largest remainder), chosen
balanced over the member's sparsity levels (``balanced_subset``), then shuffled together with a
seeded permutation. Subsets of a mixture are therefore uniform over its rows (one balance
level), and nested in n like every pdefm subset.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import functools
import hashlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from pdefm import __version__
from pdefm.catalogue import SPLITS, mask_name
from pdefm.checks import check_disk
from pdefm.data import card as cards
from pdefm.data import stats, store, writer
from pdefm.data.card import DatasetCard
from pdefm.data.mixture_spec import (  # noqa: F401 (re-exported)
    BLOCK,
    MIXER_VERSION,
    MixtureSpec,
    member_quotas,
    union_channels,
)
from pdefm.data.subset import balanced_subset
from pdefm.data.writer import SplitLayout
from pdefm.errors import PdefmError


# -- entry point ----------------------------------------------------------------------------------
def mix_datasets(spec: MixtureSpec, out: str | Path, progress: bool = True) -> DatasetCard:
    """Write the mixture ``spec`` to ``out`` (or finish it, or find it finished there);
    returns its card.

    Every check (spec, members, output folder, disk) comes before ``out`` is created. The
    writing, block-level resume of an interrupted mix and the atomic finish are
    ``writer.write_dataset``'s; a mix whose members changed since it was started restarts."""
    if not isinstance(spec, MixtureSpec):
        raise PdefmError(f"spec must be a MixtureSpec, got {type(spec).__name__}")
    spec.validate()
    members = [_load_member(Path(p), w) for p, w in spec.members]
    _check_members(members)
    out = Path(out)
    writer.check_out(out)
    source = MixtureSource(spec, members)
    existing = writer.finished(out, source)
    if existing is not None:
        return existing
    source.choose()  # checks every member has the samples its quota needs
    if not (out / cards.PROGRESS_NAME).is_file():
        _check_disk(spec, members, out)
    return writer.write_dataset(source, out, progress=progress)


def _check_disk(spec: MixtureSpec, members: list[_Member], out: Path) -> None:
    """Refuse a mixture the disk cannot hold (float32 fields plus vectors, every split)."""
    n = members[0].card.resolution
    samples = sum(spec.count(s) for s in SPLITS)
    check_disk(out, samples * (8 * n * n + 256), "mix", "lower --n-train/--n-val/--n-test")


@dataclass(frozen=True)
class _Member:
    """A member dataset as the mixer uses it: its folder, weight and card."""

    path: Path
    weight: float
    card: DatasetCard


def _load_member(path: Path, weight: float) -> _Member:
    card = cards.load_card(path)
    if card.is_mixture:
        raise PdefmError(f"{path} is itself a mixture; mix its members directly")
    return _Member(path, weight, card)


def _check_members(members: list[_Member]) -> None:
    resolutions = {m.card.resolution for m in members}
    if len(resolutions) > 1:
        listing = ", ".join(f"{m.path}: {m.card.resolution}" for m in members)
        raise PdefmError(
            f"mixture members have different resolutions ({listing}); generate them at one "
            "resolution"
        )
    paths = [str(m.path.resolve()) for m in members]
    if len(set(paths)) < len(paths):
        raise PdefmError("a member dataset is listed twice; give each directory once")
    for m in members:
        if len(m.card.output_channels) > 1:
            raise PdefmError(
                f"member {m.path} has several outputs ({', '.join(m.card.output_channels)}); "
                "mixtures take datasets with one output"
            )
        extra = m.card.field_channels[1:]
        if extra:
            raise PdefmError(
                f"member {m.path} has input fields besides the source ({', '.join(extra)}); "
                "mixtures copy constant channels only: mix datasets without field inputs"
            )


# -- choosing samples -----------------------------------------------------------------------------
def _picks(spec: MixtureSpec, members: list[_Member], split: str) -> np.ndarray:
    """(n, 2) int64 rows of (member, origin row) in mixture order."""
    quotas = member_quotas([m.weight for m in members], spec.count(split))
    parts = []
    for k, (member, quota) in enumerate(zip(members, quotas, strict=True)):
        available = member.card.count(split)
        if quota > available:
            raise PdefmError(
                f"member {member.path} has {available} {split} samples but the mixture needs "
                f"{quota}; lower --n-{split} or its weight, or generate a larger member"
            )
        if quota == 0:
            continue
        levels = member.card.balance_levels
        rows = balanced_subset(available, quota, levels, seed=_seed(spec.seed, split, k))
        parts.append(np.stack([np.full(quota, k), rows], axis=1))
    picks = np.concatenate(parts).astype(np.int64)
    order = np.random.default_rng(_seed(spec.seed, split, -1)).permutation(len(picks))
    return picks[order]


def _seed(seed: int, split: str, member: int) -> int:
    digest = hashlib.sha256(f"pdefm-mix:{seed}:{split}:{member}".encode()).digest()
    return int.from_bytes(digest[:8], "little") >> 1


# -- writing --------------------------------------------------------------------------------------
@dataclass
class MixtureSource:
    """The block source of a mixture (see ``writer.BlockSource``): block b of a split copies
    rows [b * BLOCK, (b + 1) * BLOCK) of its picks from the members."""

    mix_spec: MixtureSpec
    members: list[_Member]
    picks: dict[str, np.ndarray] = field(default_factory=dict)  # split -> (n, 2), see _picks
    kind = "mixture"
    refusals = ()

    @functools.cached_property
    def channels(self) -> list[str]:
        """The union channel layout of the members (with masks if the spec asks)."""
        return union_channels([m.card.input_channels for m in self.members], self.mix_spec.masks)

    @functools.cached_property
    def coefficient_names(self) -> tuple[str, ...]:
        """Every member's per-sample coefficients, first seen first. Read from the members'
        split files, so only when a split is written: a finished mix never opens them."""
        return tuple(dict.fromkeys(_coefficient_names(self.members)))

    def choose(self) -> None:
        """Pick every split's samples (a PdefmError if a member has too few)."""
        self.picks = {s: _picks(self.mix_spec, self.members, s) for s in SPLITS}

    @property
    def spec(self) -> dict:
        return self.mix_spec.to_dict()

    @property
    def guard(self) -> dict:
        """The members' content: a member regenerated since the mix started restarts it."""
        return {str(m.path.resolve()): m.card.data_hash for m in self.members}

    @property
    def command(self) -> str:
        return self.mix_spec.command()

    desc = "mix"

    def matches(self, spec: dict) -> bool:
        return spec == self.mix_spec.to_dict()

    def layout(self, split: str) -> SplitLayout:
        return SplitLayout(
            count=self.mix_spec.count(split),
            block_size=BLOCK,
            resolution=self.members[0].card.resolution,
            n_channels=len(self.channels) - 1,
            coefficient_names=self.coefficient_names,
            optional=store.OPTIONAL_VECTORS,
        )

    @contextlib.contextmanager
    def reading(self, split: str) -> Iterator[writer.BlockReader]:
        with contextlib.ExitStack() as stack:
            files = [
                stack.enter_context(store.open_split(m.card.split_file(split), m.card.count(split)))
                for m in self.members
            ]
            picks = self.picks[split]

            def read(block: int) -> dict:
                rows = picks[block * BLOCK : (block + 1) * BLOCK]
                names = self.coefficient_names
                return _block_arrays(rows, self.members, files, self.channels, names)

            yield read

    def card(self, out: Path, hashes: dict[str, str]) -> dict:
        return _build_card(self.mix_spec, out, self.members, self.channels, self.picks, hashes)


def _coefficient_names(members: list[_Member]) -> list[str]:
    names = []
    for m in members:
        with store.open_split(m.card.split_file("train")) as h5:
            names += list(h5["coefficients"])
    return names


def _block_arrays(block: np.ndarray, members, files, channels, coefficient_names) -> dict:
    """One block's rows in the split layout, every member mapped onto ``channels``."""
    n = len(block)
    res = members[0].card.resolution
    arrays = {
        "source": np.empty((n, res, res), np.float32),
        "solution": np.empty((n, res, res), np.float32),
        "channels": np.zeros((n, len(channels) - 1), np.float64),
        **{k: np.empty(n, np.float64) for k in store.VECTORS if k != "attempts"},
        "attempts": np.empty(n, np.int64),
        "member": block[:, 0].copy(),
        "origin_row": block[:, 1].copy(),
        **{f"coefficients/{c}": np.full(n, np.nan) for c in coefficient_names},
    }
    for k in np.unique(block[:, 0]):
        at = np.flatnonzero(block[:, 0] == k)
        _fill_member(arrays, at, block[at, 1], members[k], files[k], channels)
    return arrays


def _fill_member(arrays: dict, at, rows, member: _Member, h5, channels: list[str]) -> None:
    """Copy rows of one member into positions ``at`` of the block's arrays."""
    fields = store.read_fields(h5, rows)
    arrays["source"][at] = fields["source"]
    arrays["solution"][at] = fields["solution"]
    for name in store.VECTORS:
        arrays[name][at] = _take(h5[name], rows)
    own = member.card.input_channels[1:]
    values = _take(h5["channels"], rows)
    for j, name in enumerate(own):
        arrays["channels"][at, channels.index(name) - 1] = values[:, j]
        if (mask := mask_name(name)) in channels:
            arrays["channels"][at, channels.index(mask) - 1] = 1.0
    for name, data in h5["coefficients"].items():
        arrays[f"coefficients/{name}"][at] = _take(data, rows)


def _take(dataset, rows: np.ndarray) -> np.ndarray:
    """``dataset[rows]`` for unique rows in any order (h5py reads increasing indices only)."""
    order = np.argsort(rows)
    out = np.empty((len(rows), *dataset.shape[1:]), dataset.dtype)
    out[order] = dataset[rows[order]]
    return out


# -- the card -------------------------------------------------------------------------------------
def _build_card(spec: MixtureSpec, out: Path, members, channels, picks, hashes) -> dict:
    families = list(dict.fromkeys(m.card.family for m in members))
    with store.open_split(out / "train.h5", spec.n_train) as h5:
        vectors = store.read_vectors(h5)
    first = members[0].card
    return {
        "format": cards.CARD_FORMAT,
        "format_version": cards.CARD_VERSION,
        "pdefm_version": __version__,
        "generator_version": MIXER_VERSION,
        "family": "mixture",
        "families": families,
        "equation": "mixture of " + ", ".join(families),
        "family_config": {},
        "parameter": {
            "name": "mixed",
            "description": "each member's own physics parameter (see members)",
            "integer": False,
            "declared": {"kind": "mixture", "low": None, "high": None},
        },
        "grid": first.grid,
        "channels": {"inputs": channels, "outputs": ["solution"]},
        "source_law": {"kind": "mixture", "sparsity_levels": [], "balance_levels": 1},
        "members": [_member_entry(m) for m in members],
        "seed": spec.seed,
        "counts": {s: spec.count(s) for s in SPLITS},
        "files": {s: f"{s}.h5" for s in SPLITS},
        "content_hash": hashes,
        "realised": {s: _realised(picks[s], members) for s in SPLITS},
        "normalisation": _normalisation(vectors, channels, members, families),
        "warnings": [],
        "command": spec.command(),
        "spec": spec.to_dict(),
        "created_utc": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
    }


def _member_entry(member: _Member) -> dict:
    return {
        "path": str(member.path.resolve()),
        "weight": member.weight,
        **member.card.member_fields(),
    }


def _realised(picks: np.ndarray, members: list[_Member]) -> dict:
    per_member = np.bincount(picks[:, 0], minlength=len(members))
    families: dict[str, int] = {}
    for m, count in zip(members, per_member, strict=True):
        families[m.card.family] = families.get(m.card.family, 0) + int(count)
    return {"families": families, "members": [int(c) for c in per_member]}


def _normalisation(vectors: dict, channels: list[str], members, families: list[str]) -> dict:
    """The whole train split's statistics plus the same per family (normalisation is per
    family: each sample is scaled by its own family's medians)."""
    out = stats.normalisation_stats(vectors, channels[1:])
    family_of = np.array([members[k].card.family for k in vectors["member"]])
    out["families"] = {}
    for fam in families:
        rows = family_of == fam
        sub = {k: v[rows] for k, v in vectors.items() if not k.startswith("coefficients/")}
        out["families"][fam] = stats.normalisation_stats(sub, channels[1:])
    return out
