"""Two public layouts of PDE data, read by `pdefm import` and written by `pdefm export`.

PDEBench 2D Darcy flow (read). Its HDF5 files hold top-level datasets

    nu            (N, n, n)     the coefficient a(x)
    tensor        (N, 1, n, n)  the solution u of -div(a grad u) = beta on (0, 1)^2, u = 0 on
                                the boundary
    x-coordinate  (n,), y-coordinate (n,), t-coordinate   the points (t is unused)

and the constant forcing beta only in the file name (``2D_DarcyFlow_beta1.0_Train.hdf5``).

The Well-style HDF5 (written by ``export_well``, read back), for a steady 2-D problem:

    attrs              dataset_name, grid_type "cartesian", n_spatial_dims 2, n_trajectories N,
                       simulation_parameters (names; a constant one also as its own attribute),
                       pdefm_inputs, pdefm_outputs, pdefm_family, pdefm_equation,
                       pdefm_parameter_name
    dimensions/        attr spatial_dims ["x", "y"]; x (nx,), y (ny,)
    boundary_conditions/NAME   attrs bc_type, associated_dims; mask (n,) marks the side(s)
    scalars/NAME       (N,) per-sample constants (and ``parameter``)
    t0_fields/NAME     (N, nx, ny) every scalar field, x first

Each reader is an adapter with the ``Arrays`` interface of ``import_files`` (``path``,
``names``, ``whole``, ``shape``, ``dtype``, ``rows``, ``close``) that presents the file under
the names of pdefm's import format, so the importer validates and writes it like any other
file (and nothing is written before the whole file has been checked). Fields are read by rows,
never whole. ``open_adapter`` (called by ``import_files.open_input``) recognises the layouts by
content. Imports no torch.
"""

from __future__ import annotations

import contextlib
import os
import re
from collections.abc import Callable, Iterator
from contextvars import ContextVar
from dataclasses import dataclass, field
from pathlib import Path

import h5py
import numpy as np

from pdefm.errors import PdefmError

PDEBENCH_DARCY = "pdebench-darcy"
WELL = "well"
DARCY_FAMILY = "pdebench-darcy"
DARCY_INPUTS = ("diffusion_xx", "diffusion_yy", "diffusion_xy")
# "1.0", "0.01", "1e-2", "100": a number right after "beta" in the file name
_BETA_IN_NAME = re.compile(r"beta([0-9]+(?:\.[0-9]*)?(?:[eE][+-]?[0-9]+)?)")

# pdefm's boundary tags <-> The Well's bc_type. The Well knows WALL, OPEN and PERIODIC; a
# Dirichlet side is written WALL, a Neumann side OPEN (The Well's outflow condition, closest to
# a zero-gradient one); NEUMANN and DIRICHLET are read too.
WELL_BC = {"periodic": "PERIODIC", "dirichlet": "WALL", "neumann": "OPEN"}
PDEFM_BC = {"PERIODIC": "periodic", "WALL": "dirichlet", "DIRICHLET": "dirichlet",
            "OPEN": "neumann", "NEUMANN": "neumann"}  # fmt: skip

# root attributes of the export; a constant simulation parameter of the same name keeps only
# its scalars/ dataset
_ROOT_ATTRS = ("dataset_name", "grid_type", "n_spatial_dims", "n_trajectories",
               "simulation_parameters", "pdefm_inputs", "pdefm_outputs", "pdefm_family",
               "pdefm_equation", "pdefm_parameter_name", "pdefm_split",
               "pdefm_content_hash")  # fmt: skip

_BETA: ContextVar[float | None] = ContextVar("pdefm_interop_beta", default=None)

_COPY_ROWS = 64  # samples per block when exporting


# -- options -------------------------------------------------------------------------------
@contextlib.contextmanager
def adapter_options(beta: float | None = None) -> Iterator[None]:
    """Options for the adapters of the imports run inside the block: ``beta``, the constant
    forcing of a PDEBench Darcy file (the --beta flag; default: from the file name). A
    context, so that ``import_files.open_input`` keeps one argument; an import of any other
    file with ``beta`` set is an error."""
    token = _BETA.set(beta)
    try:
        yield
    finally:
        _BETA.reset(token)


# -- presented arrays ----------------------------------------------------------------------
@dataclass
class _Rows:
    """A field read by rows from an HDF5 dataset: ``dataset[rows]``, or with ``channel``
    ``dataset[rows, channel]`` (PDEBench's (N, 1, n, n) solution as (N, n, n))."""

    dataset: h5py.Dataset
    label: str  # where it is in the file, for errors
    channel: int | None = None

    @property
    def shape(self) -> tuple[int, ...]:
        shape = tuple(self.dataset.shape)
        return shape if self.channel is None else (shape[0], *shape[2:])

    @property
    def dtype(self) -> np.dtype:
        return self.dataset.dtype

    def read(self, selection: slice | np.ndarray) -> np.ndarray:
        key = selection if self.channel is None else (selection, self.channel)
        return self.dataset[key]

    def whole(self) -> np.ndarray:
        return self.read(slice(None))


@dataclass
class _Value:
    """A small array held in memory (a constant, coordinates, a name), made on first use
    (so that, e.g., a bad boundary description is an error only if the flag does not
    replace it)."""

    make: Callable[[], np.ndarray]
    _value: np.ndarray | None = field(default=None, repr=False)

    def get(self) -> np.ndarray:
        if self._value is None:
            self._value = np.asarray(self.make())
        return self._value

    @property
    def shape(self) -> tuple[int, ...]:
        return self.get().shape

    @property
    def dtype(self) -> np.dtype:
        return self.get().dtype

    def read(self, selection: slice | np.ndarray) -> np.ndarray:
        return self.get()[selection]

    def whole(self) -> np.ndarray:
        return self.get()


def _value(array: object) -> _Value:
    return _Value(lambda: np.asarray(array))


class InteropArrays:
    """A PDEBench or Well-style HDF5 file presented as an import file (``import_files.Arrays``):
    ``names`` are the import format's names (source, solution, inputs, x, y, ...), each read
    from the file on demand."""

    def __init__(self, path: Path, h5: h5py.File, layout: str, entries: dict):
        self.path = path
        self.layout = layout  # PDEBENCH_DARCY or WELL
        self._h5 = h5
        self._entries: dict[str, _Rows | _Value] = entries
        self.names = tuple(entries)

    def whole(self, name: str) -> np.ndarray:
        return np.asarray(self._read(name, None))

    def shape(self, name: str) -> tuple[int, ...]:
        return self._entries[name].shape

    def dtype(self, name: str) -> np.dtype:
        return self._entries[name].dtype

    def rows(self, name: str, index: np.ndarray) -> np.ndarray:
        """Rows at increasing ``index`` (N, ...): one slice when they are contiguous."""
        if len(index) and index[-1] - index[0] + 1 == len(index):
            return self._read(name, slice(int(index[0]), int(index[-1]) + 1))
        return self._read(name, np.asarray(index))

    def _read(self, name: str, selection: slice | np.ndarray | None) -> np.ndarray:
        """Rows ``selection`` of ``name``, or all of it (a 0-d value too) when None."""
        entry = self._entries[name]
        try:
            return entry.whole() if selection is None else entry.read(selection)
        except OSError as exc:
            where = entry.label if isinstance(entry, _Rows) else name
            raise PdefmError(
                f"{where} in {self.path} cannot be read ({exc}); the file is damaged, save it again"
            ) from None

    def close(self) -> None:
        self._h5.close()


# -- recognising the layouts ---------------------------------------------------------------
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


def open_adapter(path: Path) -> InteropArrays | None:
    """The adapter for a PDEBench Darcy or Well-style HDF5 file (the caller closes it), or
    None for any other file, which the plain readers then open. A --beta given for another
    file is an error (it would otherwise be silently ignored)."""
    beta = _BETA.get()
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
            entries = _darcy_entries(path, h5, beta)
        else:
            entries = _well_entries(path, h5)
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


# -- PDEBench 2D Darcy flow ----------------------------------------------------------------
def darcy_beta(path: Path, given: float | None = None) -> float:
    """The constant forcing beta: ``given`` (--beta), else the number after "beta" in the file
    name; a flag that contradicts the name, or neither, is an error."""
    match = _BETA_IN_NAME.search(path.name)
    named = float(match.group(1)) if match else None
    if given is not None:
        if not np.isfinite(given):
            raise PdefmError(f"--beta must be a finite number, got {given!r}")
        if named is not None and named != given:
            raise PdefmError(
                f"--beta {given:g} contradicts the file name {path.name} (beta {named:g}); "
                "drop --beta or check which file this is"
            )
        return float(given)
    if named is None:
        raise PdefmError(
            f"{path.name} does not name the forcing beta of -div(a grad u) = beta (PDEBench "
            "puts it in the file name, e.g. 2D_DarcyFlow_beta1.0_Train.hdf5); pass it with "
            "--beta, e.g. --beta 1.0"
        )
    return named


def darcy_equation(beta: float) -> str:
    return (
        f"-div(a(x) grad u) = beta, beta = {beta!r}, on (0,1)^2 with u = 0 on the boundary; "
        "a = diffusion_xx = diffusion_yy (PDEBench 2D Darcy flow)"
    )


def _darcy_entries(path: Path, h5: h5py.File, beta: float | None) -> dict:
    """The import arrays of a PDEBench Darcy file: source = beta (N,), solution =
    tensor[:, 0] (N, n, n), diffusion_xx = diffusion_yy = nu (N, n, n), diffusion_xy = 0
    (N,), x / y = the 1-D coordinates (which array axis is x stays the user's answer)."""
    nu = _pdebench_dataset(path, h5, "nu", "(N, n, n), the coefficient a(x)")
    tensor = _pdebench_dataset(path, h5, "tensor", "(N, 1, n, n), the solution u")
    if len(nu.shape) != 3:
        raise PdefmError(
            f"nu in {path} has shape {nu.shape}: expected (N, n, n), one coefficient field per "
            "sample"
        )
    n_samples, grid = nu.shape[0], tuple(nu.shape[1:])
    if tuple(tensor.shape) != (n_samples, 1, *grid):
        raise PdefmError(
            f"tensor in {path} has shape {tensor.shape}: expected (N, 1, n, n) = "
            f"({n_samples}, 1, {grid[0]}, {grid[1]}) to match nu"
        )
    beta = darcy_beta(path, beta)
    entries = {
        "source": _value(np.full(n_samples, beta)),
        "solution": _Rows(tensor, "tensor", channel=0),
        "diffusion_xx": _Rows(nu, "nu"),
        "diffusion_yy": _Rows(nu, "nu"),  # isotropic: the same rows, read again per block
        "diffusion_xy": _value(np.zeros(n_samples)),
        "input_names": _value(np.array(DARCY_INPUTS)),
        "boundary": _value("dirichlet"),
        "family": _value(DARCY_FAMILY),
        "equation": _value(darcy_equation(beta)),
    }
    entries.update(_darcy_coordinates(path, h5, grid))
    return entries


def _pdebench_dataset(path: Path, h5: h5py.File, name: str, what: str) -> h5py.Dataset:
    item = h5.get(name)
    if not isinstance(item, h5py.Dataset):
        found = ", ".join(h5.keys())
        raise PdefmError(
            f"{path} looks like a PDEBench 2D Darcy flow file but has no dataset `{name}` "
            f"(found: {found}); PDEBench stores {name} as {what}"
        )
    return item


def _darcy_coordinates(path: Path, h5: h5py.File, grid: tuple[int, ...]) -> dict:
    """x and y from ``x-coordinate`` / ``y-coordinate`` (n,), or none (the unit square)."""
    present = [k for k in ("x-coordinate", "y-coordinate") if k in h5]
    if not present:
        return {}
    if len(present) == 1:
        other = "y-coordinate" if present[0] == "x-coordinate" else "x-coordinate"
        raise PdefmError(f"{path} has {present[0]} but no {other}; give both or neither")
    out = {}
    for key, name, n in (("x-coordinate", "x", grid[0]), ("y-coordinate", "y", grid[1])):
        values = np.asarray(h5[key][()], dtype=np.float64)
        if values.shape != (n,):
            raise PdefmError(
                f"{key} in {path} has shape {values.shape}: expected ({n},), one point per "
                "grid line of nu"
            )
        out[name] = _value(values)
    return out


# -- The Well-style HDF5: reading ----------------------------------------------------------
def _well_entries(path: Path, h5: h5py.File) -> dict:
    """The import arrays of a Well-style file: the inputs (``pdefm_inputs``, default: source,
    the other t0_fields, the scalars), the output (``pdefm_outputs``, default solution) as
    ``solution``, the coordinates as 2-D arrays indexed [x, y] (so the importer knows x is
    axis 0 and refuses a contradicting --x-axis), the boundary, parameter and names."""
    _check_well_root(path, h5)
    output = _well_output(path, h5)
    solution = _well_field(path, h5["t0_fields"], output)
    n_samples = _well_samples(path, h5, solution)
    inputs = _well_inputs(path, h5, output)
    entries: dict[str, _Rows | _Value] = {"source": _well_input(path, h5, "source", n_samples)}
    entries["solution"] = solution
    for name in inputs[1:]:
        entries[name] = _well_input(path, h5, name, n_samples)
    if len(inputs) > 1:
        entries["input_names"] = _value(np.array(inputs[1:], dtype=str))
    entries.update(_well_coordinates(path, h5))
    if "boundary_conditions" in h5 and len(h5["boundary_conditions"]):
        entries["boundary"] = _Value(lambda: well_boundary(path, h5))
    entries.update(_well_parameter(path, h5, n_samples))
    entries.update(_well_names(h5))
    return entries


def _check_well_root(path: Path, h5: h5py.File) -> None:
    dims = h5.attrs.get("n_spatial_dims", 2)
    if np.ndim(dims) != 0 or int(dims) != 2:
        raise PdefmError(
            f"{path} has n_spatial_dims {dims}; pdefm imports 2-D problems (n_spatial_dims 2)"
        )
    grid = _attr_text(h5.attrs, "grid_type")
    if grid is not None and grid.lower() != "cartesian":
        raise PdefmError(
            f"{path} has grid_type {grid!r}; pdefm imports cartesian grids: resample the "
            "fields onto one"
        )


def _well_output(path: Path, h5: h5py.File) -> str:
    outputs = _attr_strings(h5.attrs, "pdefm_outputs") or ["solution"]
    if len(outputs) != 1:
        raise PdefmError(
            f"pdefm_outputs of {path} names {len(outputs)} fields ({', '.join(outputs)}); "
            "pdefm models predict one field: name one output per import"
        )
    if outputs[0] not in h5["t0_fields"]:
        raise PdefmError(
            f"{path} has no t0_fields/{outputs[0]}, the output; add it (N, nx, ny) or name "
            "the output field in the root attribute pdefm_outputs"
        )
    return outputs[0]


def _well_samples(path: Path, h5: h5py.File, output: _Rows) -> int:
    """N: the output's first dimension, which n_trajectories (if given) must equal."""
    n_samples = int(output.shape[0]) if output.shape else 0
    given = h5.attrs.get("n_trajectories")
    if given is not None and int(np.asarray(given).reshape(-1)[0]) != n_samples:
        raise PdefmError(
            f"{path} has n_trajectories {int(np.asarray(given).reshape(-1)[0])} but "
            f"{output.label} holds {n_samples} samples; make them agree"
        )
    return n_samples


def _well_inputs(path: Path, h5: h5py.File, output: str) -> list[str]:
    """The inputs in order, source first: ``pdefm_inputs``, else source, the other t0_fields
    and the scalars (but ``parameter``) in file order."""
    from pdefm.data.import_checks import KNOWN_ARRAYS  # (import_checks imports this module)

    inputs = _attr_strings(h5.attrs, "pdefm_inputs")
    if inputs is None:
        fields = [k for k in h5["t0_fields"] if k not in (output, "source")]
        scalars = [k for k in h5.get("scalars", {}) if k != "parameter"]
        inputs = ["source", *fields, *scalars]
    if not inputs or inputs[0] != "source":
        raise PdefmError(
            f"pdefm_inputs of {path} is {inputs}; pdefm's first input is the forcing field "
            "source: list it first (and name that field source)"
        )
    for name in inputs[1:]:
        if name in KNOWN_ARRAYS or name == output:
            raise PdefmError(
                f"pdefm_inputs of {path} names {name!r}, a name pdefm import reserves; rename "
                "that field or scalar"
            )
    return inputs


def _well_input(path: Path, h5: h5py.File, name: str, n_samples: int) -> _Rows | _Value:
    """An input: the field t0_fields/NAME, else the constant scalars/NAME, else the root
    attribute NAME of a constant simulation parameter (broadcast to (N,))."""
    if name in h5["t0_fields"]:
        return _well_field(path, h5["t0_fields"], name)
    scalars = h5.get("scalars")
    if isinstance(scalars, h5py.Group) and name in scalars:
        return _well_scalar(path, scalars, name, n_samples)
    parameters = _attr_strings(h5.attrs, "simulation_parameters") or []
    if name in parameters and name in h5.attrs and name not in _ROOT_ATTRS:
        value = np.asarray(h5.attrs[name])
        if value.size == 1 and value.dtype.kind in "fiu":
            return _value(np.full(n_samples, value.reshape(-1)[0], dtype=np.float64))
    if "pdefm_inputs" in h5.attrs:
        why, fix = "is listed in pdefm_inputs", "or drop it from pdefm_inputs"
    else:
        why, fix = "is pdefm's forcing input", "(name the forcing field source)"
    raise PdefmError(
        f"{name!r} {why} but {path} has neither t0_fields/{name} nor scalars/{name}; add it "
        f"as a (N, nx, ny) field or a (N,) constant {fix}"
    )


def _well_field(path: Path, fields: h5py.Group, name: str) -> _Rows:
    item = fields[name]
    label = f"t0_fields/{name}"
    if not isinstance(item, h5py.Dataset):
        raise PdefmError(f"{label} in {path} is a group; store each field as a dataset")
    if bool(item.attrs.get("time_varying", False)):
        raise PdefmError(
            f"{label} in {path} varies in time (shape {item.shape}); pdefm imports steady "
            "problems: write one time step as (N, nx, ny), e.g. field[:, -1]"
        )
    return _Rows(item, label)


def _well_scalar(path: Path, scalars: h5py.Group, name: str, n_samples: int) -> _Value:
    """scalars/NAME as (N,) float64: (N,) per sample, or () one value for every sample."""
    item = scalars[name]
    values = np.asarray(item[()]) if isinstance(item, h5py.Dataset) else None
    if values is None or values.shape not in ((n_samples,), ()) or values.dtype.kind not in "fiu":
        shape = values.shape if values is not None else "a group"
        raise PdefmError(
            f"scalars/{name} in {path} is {shape}: expected ({n_samples},) numbers, one per "
            "trajectory, or () for one value"
        )
    return _value(np.broadcast_to(values.astype(np.float64), (n_samples,)).copy())


def _well_coordinates(path: Path, h5: h5py.File) -> dict:
    """x and y as (nx, ny) grids indexed [x, y] from dimensions/ (spatial_dims order), or,
    without dimensions, x_axis 0 (fields are x first by the layout)."""
    dims = h5.get("dimensions")
    if not isinstance(dims, h5py.Group):
        return {"x_axis": _value(0)}
    names = _attr_strings(dims.attrs, "spatial_dims") or ["x", "y"]
    if len(names) != 2:
        raise PdefmError(f"dimensions of {path} has spatial_dims {names}; pdefm imports 2-D grids")
    axes = []
    for name in names:
        item = dims.get(name)
        if not isinstance(item, h5py.Dataset) or item.ndim != 1:
            shape = item.shape if isinstance(item, h5py.Dataset) else "missing"
            raise PdefmError(
                f"dimensions/{name} in {path} is {shape}: expected ({'nx' if not axes else 'ny'},)"
                " coordinates shared by every sample"
            )
        axes.append(np.asarray(item[()], dtype=np.float64))
    x, y = np.meshgrid(*axes, indexing="ij")
    return {"x": _value(x), "y": _value(y)}


def well_boundary(path: Path, h5: h5py.File) -> str:
    """The boundary_conditions group as a --boundary spec, e.g. "x_low=periodic,...":
    each subgroup's ``bc_type`` on the sides of its ``associated_dims`` that its ``mask``
    marks (index 0: low, index -1: high; both when there is no mask)."""
    dims = _attr_strings(h5["dimensions"].attrs, "spatial_dims") if "dimensions" in h5 else None
    axis_of = dict(zip(dims or ["x", "y"], ("x", "y"), strict=True))
    sides: dict[str, str] = {}
    for name, group in h5["boundary_conditions"].items():
        where = f"boundary_conditions/{name} in {path}"
        bc_type = (_attr_text(group.attrs, "bc_type") or "").upper()
        if bc_type not in PDEFM_BC:
            raise PdefmError(
                f"{where} has bc_type {bc_type or 'nothing'!r}; pdefm knows "
                f"{', '.join(PDEFM_BC)}: fix it or describe the boundary with --boundary"
            )
        for dim in _attr_strings(group.attrs, "associated_dims") or []:
            if dim not in axis_of:
                raise PdefmError(
                    f"{where} has associated_dims {dim!r}; use the spatial dims "
                    f"{', '.join(axis_of)}"
                )
            for end in _marked_ends(group):
                side = f"{axis_of[dim]}_{end}"
                if sides.get(side, PDEFM_BC[bc_type]) != PDEFM_BC[bc_type]:
                    raise PdefmError(
                        f"{where} gives {side} {PDEFM_BC[bc_type]} but another group gives it "
                        f"{sides[side]}; give each side one condition"
                    )
                sides[side] = PDEFM_BC[bc_type]
    return ",".join(f"{side}={tag}" for side, tag in sides.items())


def _marked_ends(group: h5py.Group) -> tuple[str, ...]:
    mask = np.asarray(group["mask"][()], dtype=bool).reshape(-1) if "mask" in group else None
    if mask is None or not mask.size or mask[0] == mask[-1]:
        return ("low", "high")
    return ("low",) if mask[0] else ("high",)


def _well_parameter(path: Path, h5: h5py.File, n_samples: int) -> dict:
    """scalars/parameter and pdefm_parameter_name, when the file has a parameter."""
    scalars = h5.get("scalars")
    name = _attr_text(h5.attrs, "pdefm_parameter_name")
    has = isinstance(scalars, h5py.Group) and "parameter" in scalars
    if not has:
        if name not in (None, "none"):
            raise PdefmError(
                f"{path} has pdefm_parameter_name {name!r} but no scalars/parameter; add it "
                "(N,) or drop the attribute"
            )
        return {}
    out = {"parameter": _well_scalar(path, scalars, "parameter", n_samples)}
    if name is not None:
        out["parameter_name"] = _value(name)
    return out


def _well_names(h5: h5py.File) -> dict:
    """family (pdefm_family, else a short dataset_name) and equation (pdefm_equation)."""
    from pdefm.data.import_inputs import NAME  # (import_inputs imports this module)

    out = {}
    family = _attr_text(h5.attrs, "pdefm_family")
    if family is None:  # The Well's names are short; one that is not is left to --family
        name = _attr_text(h5.attrs, "dataset_name")
        family = name if name and NAME.match(name) else None
    if family:
        out["family"] = _value(family)
    equation = _attr_text(h5.attrs, "pdefm_equation")
    if equation:
        out["equation"] = _value(equation)
    return out


def _attr_strings(attrs: h5py.AttributeManager, key: str) -> list[str] | None:
    """A list-of-strings attribute (str or bytes elements; one string counts as a list of
    one); None when absent."""
    if key not in attrs:
        return None
    values = np.asarray(attrs[key]).reshape(-1).tolist()
    return [v.decode() if isinstance(v, bytes) else str(v) for v in values]


def _attr_text(attrs: h5py.AttributeManager, key: str) -> str | None:
    values = _attr_strings(attrs, key)
    return values[0].strip() if values else None


# -- The Well-style HDF5: writing ----------------------------------------------------------
def export_well(dataset: str | Path, out: str | Path, split: str = "test") -> Path:
    """Write ``split`` of the pdefm dataset in ``dataset`` as a Well-style HDF5 file ``out``
    (see the module docstring): fields (N, n, n) x first, float32, copied a block at a time.
    The file is written beside ``out`` and renamed into place when complete, so a failed
    export leaves nothing. Returns ``out``."""
    from pdefm.catalogue import SPLITS
    from pdefm.checks import check_disk, check_output_file
    from pdefm.data import store
    from pdefm.data.card import load_card

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
        if name not in _ROOT_ATTRS and len(values) and (values == values[0]).all():
            attrs[name] = float(values[0])
    attrs["pdefm_inputs"] = _strings(card.input_channels)
    attrs["pdefm_outputs"] = _strings(["solution"])
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
    fields = [*card.field_channels, "solution"]
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
    ``fields/``) and the solution, (N, n, n) float32 x first, copied _COPY_ROWS at a time."""
    from pdefm.data import store

    first, *rest = card.field_channels
    where = {first: "source", **{k: f"{store.FIELD_GROUP}/{k}" for k in rest}}
    where["solution"] = "solution"
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
