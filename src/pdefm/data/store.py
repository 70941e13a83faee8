"""The HDF5 layout of one split, and checked opening. Imports no torch (inspect uses it).

One file per split, one row per sample:

    source        (N, n, n) float32   f, max-normalised (mean removed where the family needs it)
    solution      (N, n, n) float32   u, solved in float64 then stored as float32
    channels      (N, C)    float64   the constant coefficient channels, in card order
    parameter     (N,)      float64   the declared physics parameter
    sparsity      (N,)      float64   inactive probability vf of the source's lattice
    attempts      (N,)      int64     sources drawn until one was accepted (1 = first)
    source_norm   (N,)      float64   ||f|| = sqrt(mean(f^2)) in float64 (grid independent)
    solution_norm (N,)      float64   ||u||, likewise
    coefficients/NAME (N,)  float64   every per-sample coefficient (e.g. theta, l, v)

Datasets with input fields besides the source (a coefficient field such as a permeability
a(x), imported or generated) add, per such field NAME, in the card's input order:

    fields/NAME       (N, n, n) float32   the field, chunked like source
    field_norms/NAME  (N,)      float64   its per-sample ||a|| = sqrt(mean(a^2))

A constant input (one value per sample) is a column of ``channels``; a field input is in
``fields``: the reader broadcasts the first to a plane, so to a model the two are the same
input, matched by name.

Datasets with several outputs keep the first in ``solution`` and add the others, in the card's
output order:

    outputs/NAME      (N, n, n) float32   a further output field, chunked like solution

Mixtures (``pdefm.data.mixture``) add two optional vectors:

    member        (N,)      int64     index of the member dataset in the card's ``members``
    origin_row    (N,)      int64     the sample's row in that member's split (provenance)

Fields are chunked one sample per chunk, uncompressed: random access reads just that sample.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import h5py
import numpy as np

from pdefm.errors import PdefmError

FIELDS = ("source", "solution")
VECTORS = ("parameter", "sparsity", "attempts", "source_norm", "solution_norm")
OPTIONAL_VECTORS = ("member", "origin_row")  # int64, mixtures only
FORMAT = "pdefm.dataset.split"
FIELD_GROUP = "fields"  # input fields besides the source, by name
FIELD_NORM_GROUP = "field_norms"  # their per-sample RMS
OUTPUT_GROUP = "outputs"  # outputs besides the first (stored as solution), by name


def create_split(
    path: Path,
    n: int,
    resolution: int,
    n_channels: int,
    names: list[str],
    optional: tuple[str, ...] = (),
    fields: tuple[str, ...] = (),
    outputs: tuple[str, ...] = (),
):
    """Create an empty split file with every dataset allocated (plus the ``optional``
    vectors among ``OPTIONAL_VECTORS``, the extra input ``fields`` and the ``outputs`` besides
    the first); returns it open for writing."""
    h5 = h5py.File(path, "w")
    h5.attrs["format"] = FORMAT
    kw = {"track_times": False}  # timestamps would make identical datasets differ in bytes
    for name in FIELDS:
        h5.create_dataset(
            name, (n, resolution, resolution), "f4", chunks=(1, resolution, resolution), **kw
        )
    h5.create_dataset("channels", (n, n_channels), "f8", **kw)
    for name in VECTORS:
        h5.create_dataset(name, (n,), "i8" if name == "attempts" else "f8", **kw)
    for name in optional:
        h5.create_dataset(name, (n,), "i8", **kw)
    group = h5.create_group("coefficients", track_order=True)
    for name in names:
        group.create_dataset(name, (n,), "f8", **kw)
    if fields:
        extra = h5.create_group(FIELD_GROUP, track_order=True)
        norms = h5.create_group(FIELD_NORM_GROUP, track_order=True)
        for name in fields:
            shape = (n, resolution, resolution)
            extra.create_dataset(name, shape, "f4", chunks=(1, resolution, resolution), **kw)
            norms.create_dataset(name, (n,), "f8", **kw)
    if outputs:
        group = h5.create_group(OUTPUT_GROUP, track_order=True)
        for name in outputs:
            shape = (n, resolution, resolution)
            group.create_dataset(name, shape, "f4", chunks=(1, resolution, resolution), **kw)
    h5.flush()
    return h5


def write_rows(h5: h5py.File, start: int, arrays: dict[str, np.ndarray]) -> str:
    """Write rows [start, start + B) of every array (keys as in the layout, ``coefficients/x``
    for coefficients) and return the SHA-256 of their bytes in key order."""
    for key, value in arrays.items():
        h5[key][start : start + len(value)] = value
    return rows_digest(arrays)


def rows_digest(arrays: dict[str, np.ndarray]) -> str:
    """SHA-256 of a block's arrays: names and bytes, in sorted name order."""
    digest = hashlib.sha256()
    for key in sorted(arrays):
        digest.update(key.encode())
        digest.update(np.ascontiguousarray(arrays[key]).data)
    return digest.hexdigest()


def read_rows(h5: h5py.File, start: int, stop: int) -> dict[str, np.ndarray]:
    """Every array's rows [start, stop), keyed as in ``write_rows``."""
    keys = [*FIELDS, *VECTORS, "channels", *_optional(h5)]
    keys += [f"coefficients/{k}" for k in h5["coefficients"]]
    groups = (FIELD_GROUP, FIELD_NORM_GROUP, OUTPUT_GROUP)
    keys += [f"{group}/{k}" for group in groups for k in _group(h5, group)]
    return {key: h5[key][start:stop] for key in keys}


def extra_fields(h5: h5py.File) -> list[str]:
    """Names of the input fields besides the source, in the order they were written."""
    return _group(h5, FIELD_GROUP)


def _group(h5: h5py.File, name: str) -> list[str]:
    return list(h5[name]) if name in h5 else []


def open_split(path: Path, count: int | None = None, fix: str = "") -> h5py.File:
    """Open a split file read-only and check its layout; a damaged file is a PdefmError."""
    if not path.is_file():
        raise PdefmError(f"{path} is missing; {fix or 'regenerate the dataset'}")
    try:
        h5 = h5py.File(path, "r")
    except OSError as exc:
        reason = str(exc).split("(")[0].strip().rstrip(",;:")
        raise PdefmError(
            f"{path} is corrupt or truncated ({reason}); {fix or 'regenerate it'}"
        ) from None
    if h5.attrs.get("format") != FORMAT or any(
        k not in h5 for k in (*FIELDS, *VECTORS, "channels")
    ):
        h5.close()
        raise PdefmError(
            f"{path} is not a pdefm split file (missing datasets); {fix or 'regenerate it'}"
        )
    if count is not None and h5["source"].shape[0] != count:
        n = h5["source"].shape[0]
        h5.close()
        raise PdefmError(
            f"{path} holds {n} samples but its card says {count}; {fix or 'regenerate it'}"
        )
    return h5


def open_split_for_append(path: Path, count: int) -> h5py.File:
    """Reopen a partial split file to continue writing it (PdefmError if it is damaged)."""
    open_split(path, count).close()
    try:
        return h5py.File(path, "r+")
    except OSError as exc:
        raise PdefmError(f"{path} cannot be reopened for writing ({exc})") from None


def read_vectors(h5: h5py.File) -> dict[str, np.ndarray]:
    """The small per-sample arrays (not the fields), read whole."""
    out = {name: h5[name][...] for name in (*VECTORS, *_optional(h5))}
    out["channels"] = h5["channels"][...]
    out.update({f"coefficients/{k}": v[...] for k, v in h5["coefficients"].items()})
    out.update({f"{FIELD_NORM_GROUP}/{k}": h5[FIELD_NORM_GROUP][k][...] for k in extra_fields(h5)})
    return out


def _optional(h5: h5py.File) -> list[str]:
    return [name for name in OPTIONAL_VECTORS if name in h5]


def read_fields(h5: h5py.File, indices: np.ndarray) -> dict[str, np.ndarray]:
    """source, solution, every extra input field (key ``fields/NAME``) and every further output
    (``outputs/NAME``) at ``indices`` (any order, repeats allowed): (B, n, n) float32 each.

    h5py needs increasing unique indices, so rows are read sorted and put back in order."""
    indices = np.asarray(indices, dtype=np.int64)
    unique, inverse = np.unique(indices, return_inverse=True)
    out = {}
    extra = [f"{group}/{k}" for group in (FIELD_GROUP, OUTPUT_GROUP) for k in _group(h5, group)]
    for name in (*FIELDS, *extra):
        ds = h5[name]
        if len(unique) and unique[-1] - unique[0] + 1 == len(unique):
            rows = ds[unique[0] : unique[-1] + 1]  # a contiguous run: one slice read
        else:
            rows = ds[unique]
        out[name] = rows[inverse]
    return out
