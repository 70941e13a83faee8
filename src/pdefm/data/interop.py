"""Public layouts of PDE data that `pdefm import` reads as they are: PDEBench 2D Darcy flow
(``pdebench``) and The Well-style HDF5 (``well``; written by ``export``). ``open_any`` opens an
import file: the adapter of a recognised layout (by content, never by name), else the plain
readers of ``import_files``; either way the importer sees one ``Arrays`` interface, so it
validates and writes such a file like any other (nothing is written before the whole file is
checked). Imports no torch."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

import h5py

from pdefm.data.import_files import Arrays, open_input
from pdefm.data.interop_arrays import PDEBENCH_DARCY, WELL, InteropArrays
from pdefm.data.pdebench import darcy_entries
from pdefm.data.well import well_entries
from pdefm.errors import PdefmError


@contextlib.contextmanager
def open_any(path: Path, beta: float | None = None) -> Iterator[Arrays]:
    """The import file at ``path`` as ``Arrays``: a PDEBench Darcy or Well-style adapter, or
    the NPZ / HDF5 / torch.save reader. ``beta`` is PDEBench's constant forcing (default: from
    the file name); given for any other file it is an error."""
    adapter = open_adapter(path, beta)
    if adapter is None:
        with open_input(path) as arrays:
            yield arrays
        return
    try:
        yield adapter
    finally:
        adapter.close()


def layout_of(h5: h5py.File) -> str | None:
    """PDEBENCH_DARCY, WELL or None (a plain import file) for an open HDF5 file.

    Well-style: a ``t0_fields`` group. PDEBench Darcy: a ``nu`` dataset in a file that is not
    a pdefm import file (no ``source`` / ``solution``) or has PDEBench's ``tensor`` or
    ``x-coordinate`` (names pdefm's format cannot hold); a lone ``nu`` counts, so that a
    missing ``tensor`` is named rather than reported as a missing ``source``."""
    keys = set(h5.keys())
    if isinstance(h5.get("t0_fields"), h5py.Group):
        return WELL
    if "nu" in keys and ({"tensor", "x-coordinate"} & keys or not {"source", "solution"} & keys):
        return PDEBENCH_DARCY
    return None


def detect_layout(path: str | Path) -> str | None:
    """PDEBENCH_DARCY, WELL or None for the file at ``path`` (None for non-HDF5 files)."""
    h5 = _try_open(Path(path))
    if h5 is None:
        return None
    with h5:
        return layout_of(h5)


def open_adapter(path: Path, beta: float | None = None) -> InteropArrays | None:
    """The adapter for a PDEBench Darcy or Well-style HDF5 file (the caller closes it), or
    None for any other file, which the plain readers then open. A --beta given for another
    file is an error (it would otherwise be silently ignored)."""
    h5 = _try_open(path)
    layout = layout_of(h5) if h5 is not None else None
    if beta is not None and layout != PDEBENCH_DARCY:
        if h5 is not None:
            h5.close()
        raise PdefmError(
            f"--beta applies to PDEBench 2D Darcy flow files (datasets nu and tensor); {path} "
            "is not one: drop --beta"
        )
    if layout is None:
        if h5 is not None:
            h5.close()
        return None
    try:
        if layout == PDEBENCH_DARCY:
            entries = darcy_entries(path, h5, beta)
        else:
            entries = well_entries(path, h5)
    except BaseException:
        h5.close()
        raise
    return InteropArrays(path, h5, layout, entries)


def _try_open(path: Path) -> h5py.File | None:
    """The HDF5 file at ``path`` open for reading, or None (not HDF5, or unreadable: the plain
    HDF5 reader then reports why)."""
    try:
        if not h5py.is_hdf5(path):
            return None
        return h5py.File(path, "r")
    except OSError:
        return None
