"""`pdefm export --format well`: one split of a pdefm dataset as a The Well-style HDF5 file
(layout in ``well``), written to a hidden partial file and renamed into place."""

from __future__ import annotations

import os
from pathlib import Path

import h5py
import numpy as np

from pdefm.catalogue import SPLITS
from pdefm.checks import check_disk, check_output_file
from pdefm.data import store
from pdefm.data.card import load_card
from pdefm.data.well import ROOT_ATTRS, WELL_BC
from pdefm.errors import PdefmError

_COPY_ROWS = 64  # samples per block when exporting


def export_well(dataset: str | Path, out: str | Path, split: str = "test") -> Path:
    """Write ``split`` of the pdefm dataset in ``dataset`` as a Well-style HDF5 file ``out``
    (see the module docstring): fields (N, n, n) x first, float32, copied a block at a time.
    The file is written beside ``out`` and renamed into place when complete, so a failed
    export leaves nothing. Returns ``out``."""

    card = load_card(dataset)
    if split not in SPLITS:
        raise PdefmError(f"--split {split!r} is not a split; use one of {', '.join(SPLITS)}")
    out = check_output_file(out, "--out")
    if out.resolve().parent == Path(dataset).resolve():
        raise PdefmError(f"--out {out} is inside the dataset folder; write the export elsewhere")
    n_samples, n = card.count(split), card.resolution
    size = 4 * n_samples * n * n * (len(card.field_channels) + 1)
    check_disk(out.parent, size, "the export", "free disk space or choose another --out")
    partial = out.with_name(f".{out.name}.partial-{os.getpid()}")
    try:
        with (
            store.open_split(card.split_file(split), n_samples) as src,
            h5py.File(partial, "w", track_order=True) as dst,
        ):
            _write_well(card, split, src, dst)
        os.replace(partial, out)
    except OSError as exc:
        raise PdefmError(
            f"cannot write {out} ({exc.strerror or exc}); free disk space or choose another "
            "--out (nothing was written)"
        ) from None
    finally:
        partial.unlink(missing_ok=True)
    return out


def _write_well(card, split: str, src: h5py.File, dst: h5py.File) -> None:
    """Everything of the Well-style layout, from a pdefm card and its split file ``src``."""
    constants = card.constant_channels
    channels = src["channels"][...]  # (N, C) float64, columns in constant_channels order
    scalars = {name: channels[:, i] for i, name in enumerate(constants)}
    if card.parameter_name != "none":
        scalars["parameter"] = src["parameter"][...]
    _write_root(card, split, dst, scalars)
    _write_dimensions(card, dst)
    _write_boundaries(card, dst)
    _write_scalars(dst, scalars)
    _write_fields(card, src, dst)
    for group in ("t1_fields", "t2_fields"):  # vectors and tensors: none here
        dst.create_group(group).attrs["field_names"] = _strings([])


def _write_root(card, split: str, dst: h5py.File, scalars: dict[str, np.ndarray]) -> None:
    attrs = dst.attrs
    attrs["dataset_name"] = card.family
    attrs["grid_type"] = "cartesian"
    attrs["n_spatial_dims"] = 2
    attrs["n_trajectories"] = card.count(split)
    attrs["simulation_parameters"] = _strings(list(scalars))
    for name, values in scalars.items():  # The Well: a constant parameter is also an attribute
        if name not in ROOT_ATTRS and len(values) and (values == values[0]).all():
            attrs[name] = float(values[0])
    attrs["pdefm_inputs"] = _strings(card.input_channels)
    attrs["pdefm_outputs"] = _strings(card.output_channels)
    attrs["pdefm_family"] = card.family
    attrs["pdefm_equation"] = card.equation
    attrs["pdefm_parameter_name"] = card.parameter_name
    attrs["pdefm_split"] = split
    attrs["pdefm_content_hash"] = card.content_hash.get(split, "")


def grid_points(low: float, high: float, n: int, periodic: bool, points: str = "") -> np.ndarray:
    """The n points of one axis of a card's grid, float64 (n,): periodic x_i = low + i h,
    h = (high - low) / n (the domain ends one step after the last point); interior points
    low + (i + 1) h, h = (high - low) / (n + 1), for grids whose card says so (pdefm's
    Dirichlet darcy); else n points from low to high (an import's domain is the range of its
    points)."""
    i = np.arange(n, dtype=np.float64)
    if periodic:
        return low + i * (high - low) / n
    if "(i + 1) / (n + 1)" in points:
        return low + (i + 1) * (high - low) / (n + 1)
    return np.linspace(low, high, n)


def _write_dimensions(card, dst: h5py.File) -> None:
    grid, sides, n = card.grid, card.boundary, card.resolution
    domain = grid.get("domain", [[0.0, 1.0], [0.0, 1.0]])
    ranges = grid.get("point_range")  # [first, last] point per axis (older cards lack it)
    group = dst.create_group("dimensions", track_order=True)
    group.attrs["spatial_dims"] = _strings(["x", "y"])
    for k, (axis, (low, high)) in enumerate(zip(("x", "y"), domain, strict=True)):
        periodic = sides[f"{axis}_low"] == "periodic"
        if ranges:
            points = np.linspace(float(ranges[k][0]), float(ranges[k][1]), n)
        else:
            points = grid_points(float(low), float(high), n, periodic, str(grid.get("points", "")))
        ds = group.create_dataset(axis, data=points)
        ds.attrs["sample_varying"] = False
        ds.attrs["time_varying"] = False


def _write_boundaries(card, dst: h5py.File) -> None:
    """One subgroup per axis when both sides agree (e.g. ``x_periodic``), else one per side
    (``x_low_wall``); ``mask`` (n,) marks the boundary points the condition applies to."""
    sides, n = card.boundary, card.resolution
    fields = [*card.field_channels, *card.output_channels]
    group = dst.create_group("boundary_conditions", track_order=True)
    for axis in ("x", "y"):
        low, high = sides[f"{axis}_low"], sides[f"{axis}_high"]
        ends = [("", low, (0, n - 1))] if low == high else [
            ("_low", low, (0,)), ("_high", high, (n - 1,))
        ]  # fmt: skip
        for suffix, tag, marked in ends:
            sub = group.create_group(f"{axis}{suffix}_{WELL_BC[tag].lower()}")
            sub.attrs["bc_type"] = WELL_BC[tag]
            sub.attrs["associated_dims"] = _strings([axis])
            sub.attrs["associated_fields"] = _strings(fields)
            sub.attrs["sample_varying"] = False
            sub.attrs["time_varying"] = False
            mask = np.zeros(n, dtype=bool)
            mask[list(marked)] = True
            sub.create_dataset("mask", data=mask)


def _write_scalars(dst: h5py.File, scalars: dict[str, np.ndarray]) -> None:
    group = dst.create_group("scalars", track_order=True)
    group.attrs["field_names"] = _strings(list(scalars))
    for name, values in scalars.items():
        ds = group.create_dataset(name, data=np.asarray(values, dtype=np.float64))
        ds.attrs["sample_varying"] = True
        ds.attrs["time_varying"] = False


def _write_fields(card, src: h5py.File, dst: h5py.File) -> None:
    """t0_fields: every input field (the first stored as ``source``, others under
    ``fields/``) and every output (the first stored as ``solution``, others under
    ``outputs/``), (N, n, n) float32 x first, copied _COPY_ROWS at a time."""

    first, *rest = card.field_channels
    where = {first: "source", **{k: f"{store.FIELD_GROUP}/{k}" for k in rest}}
    out_first, *out_rest = card.output_channels
    where[out_first] = "solution"
    where.update({k: f"{store.OUTPUT_GROUP}/{k}" for k in out_rest})
    group = dst.create_group("t0_fields", track_order=True)
    group.attrs["field_names"] = _strings(list(where))
    for name, key in where.items():
        data = src[key]
        n_samples, n = data.shape[0], data.shape[-1]
        ds = group.create_dataset(name, data.shape, "f4", chunks=(1, n, n) if n_samples else None)
        ds.attrs["dim_varying"] = np.array([True, True])
        ds.attrs["sample_varying"] = True
        ds.attrs["time_varying"] = False
        for a in range(0, n_samples, _COPY_ROWS):
            ds[a : a + _COPY_ROWS] = data[a : a + _COPY_ROWS]


def _strings(values: list[str]) -> np.ndarray:
    """A list of names as an HDF5 variable-length string array (numpy's U dtype is not
    storable)."""
    return np.array(values, dtype=h5py.string_dtype())
