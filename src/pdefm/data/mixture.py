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

import datetime as _dt
import hashlib
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from pdefm import __version__
from pdefm.catalogue import SPLITS, mask_name
from pdefm.checks import check_creatable, check_disk
from pdefm.data import card as cards
from pdefm.data import stats, store
from pdefm.data.card import DatasetCard
from pdefm.data.io import LOCK_NAME, atomic_replace, directory_lock, write_json_atomic
from pdefm.data.mixture_spec import (  # noqa: F401 (re-exported)
    BLOCK,
    MIXER_VERSION,
    MixtureSpec,
    member_quotas,
    union_channels,
)
from pdefm.data.subset import balanced_subset
from pdefm.errors import PdefmError


# -- entry point ----------------------------------------------------------------------------------
def mix_datasets(spec: MixtureSpec, out: str | Path, progress: bool = True) -> DatasetCard:
    """Write the mixture ``spec`` to ``out`` (or find it finished there); returns its card.

    Every check (spec, members, output folder, disk) comes before ``out`` is created. Splits
    are written to ``SPLIT.h5.partial`` and renamed when complete; the card is written last,
    so an interrupted mix is simply redone by running it again; a failure while writing
    removes what this call created."""
    if not isinstance(spec, MixtureSpec):
        raise PdefmError(f"spec must be a MixtureSpec, got {type(spec).__name__}")
    spec.validate()
    members = [_load_member(Path(p), w) for p, w in spec.members]
    _check_members(members)
    out = Path(out)
    existing = _finished(out, spec)
    if existing is not None:
        return existing
    channels = union_channels([m.card.input_channels for m in members], spec.masks)
    picks = {s: _picks(spec, members, s) for s in SPLITS}  # checks counts before writing
    _check_disk(spec, members, out)
    before = set(out.iterdir()) if out.is_dir() else set()
    created = not out.exists()
    out.mkdir(parents=True, exist_ok=True)
    try:
        return _write(spec, out, members, channels, picks, progress)
    except BaseException:
        if created:
            shutil.rmtree(out, ignore_errors=True)
        else:
            for path in set(out.iterdir()) - before:
                path.unlink(missing_ok=True)
        raise


def _write(spec: MixtureSpec, out: Path, members, channels, picks, progress: bool) -> DatasetCard:
    with directory_lock(out, f"{out} is being written by another process; wait for it"):
        total = sum(spec.count(s) for s in SPLITS)
        hashes = {}
        bar = tqdm(total=total, unit="sample", desc="mix", disable=not progress, file=sys.stderr)
        with bar:
            for split in SPLITS:
                hashes[split] = _write_split(out, split, members, picks[split], channels, bar)
        card = DatasetCard.from_json(_build_card(spec, out, members, channels, picks, hashes), out)
        write_json_atomic(out / cards.CARD_NAME, card.to_json())
    return card


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


def _finished(out: Path, spec: MixtureSpec) -> DatasetCard | None:
    check_creatable(out, "--out")
    if out.exists() and not out.is_dir():
        raise PdefmError(f"--out {out} is a file; give a new or empty directory")
    if (out / cards.CARD_NAME).is_file():
        card = cards.load_card(out)
        if card.spec != spec.to_dict():
            raise PdefmError(
                f"{out} already holds a different dataset ({card.command}); "
                "choose another --out or delete it"
            )
        return card
    if out.is_dir() and any(
        p for p in out.iterdir() if not p.name.endswith(".partial") and p.name != LOCK_NAME
    ):
        raise PdefmError(f"--out {out} exists and is not a pdefm dataset; give a new directory")
    return None


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
def _write_split(out: Path, split: str, members, picks: np.ndarray, channels, bar) -> str:
    """Write one split block by block; returns its content hash (as the generator's)."""
    final, partial = out / f"{split}.h5", out / f"{split}.h5.partial"
    coefficient_names = list(dict.fromkeys(_coefficient_names(members)))
    files = [store.open_split(m.card.split_file(split), m.card.count(split)) for m in members]
    digests = []
    h5 = store.create_split(
        partial,
        len(picks),
        members[0].card.resolution,
        len(channels) - 1,
        coefficient_names,
        optional=store.OPTIONAL_VECTORS,
    )
    try:
        for start in range(0, len(picks), BLOCK):
            block = picks[start : start + BLOCK]
            arrays = _block_arrays(block, members, files, channels, coefficient_names)
            digests.append(store.write_rows(h5, start, arrays))
            bar.update(len(block))
    finally:
        h5.close()
        for f in files:
            f.close()
    atomic_replace(partial, final)
    return hashlib.sha256("".join(digests).encode()).hexdigest()


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
