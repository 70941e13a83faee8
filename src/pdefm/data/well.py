"""The Well-style HDF5 for a steady 2-D problem (written by ``export.export_well``), read back
as an import file:

    attrs              dataset_name, grid_type "cartesian", n_spatial_dims 2, n_trajectories N,
                       simulation_parameters (names; a constant one also as its own attribute),
                       pdefm_inputs, pdefm_outputs, pdefm_family, pdefm_equation,
                       pdefm_parameter_name
    dimensions/        attr spatial_dims ["x", "y"]; x (nx,), y (ny,)
    boundary_conditions/NAME   attrs bc_type, associated_dims; mask (n,) marks the side(s)
    scalars/NAME       (N,) per-sample constants (and ``parameter``)
    t0_fields/NAME     (N, nx, ny) every scalar field, x first

``well_entries`` presents such a file under the import format's names; fields are read by
rows."""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np

from pdefm.data.import_checks import KNOWN_ARRAYS
from pdefm.data.import_inputs import NAME
from pdefm.data.interop_arrays import Rows, Value, value_of
from pdefm.errors import PdefmError

# pdefm's boundary tags <-> The Well's bc_type. The Well knows WALL, OPEN and PERIODIC; a
# Dirichlet side is written WALL, a Neumann side OPEN (The Well's outflow condition, closest to
# a zero-gradient one); NEUMANN and DIRICHLET are read too.
WELL_BC = {"periodic": "PERIODIC", "dirichlet": "WALL", "neumann": "OPEN"}
PDEFM_BC = {"PERIODIC": "periodic", "WALL": "dirichlet", "DIRICHLET": "dirichlet",
            "OPEN": "neumann", "NEUMANN": "neumann"}  # fmt: skip

# root attributes of the export; a constant simulation parameter of the same name keeps only
# its scalars/ dataset
ROOT_ATTRS = ("dataset_name", "grid_type", "n_spatial_dims", "n_trajectories",
               "simulation_parameters", "pdefm_inputs", "pdefm_outputs", "pdefm_family",
               "pdefm_equation", "pdefm_parameter_name", "pdefm_split",
               "pdefm_content_hash")  # fmt: skip


def well_entries(path: Path, h5: h5py.File) -> dict:
    """The import arrays of a Well-style file: the inputs (``pdefm_inputs``, default: source,
    the other t0_fields, the scalars), the outputs (``pdefm_outputs``, default solution)
    under their names with ``output_names``, the coordinates as 2-D arrays indexed [x, y]
    (so the importer knows x is axis 0 and refuses a contradicting --x-axis), the boundary,
    parameter and names."""
    _check_well_root(path, h5)
    outputs = _well_outputs(path, h5)
    fields = {name: _well_field(path, h5["t0_fields"], name) for name in outputs}
    n_samples = _well_samples(path, h5, fields[outputs[0]])
    inputs = _well_inputs(path, h5, outputs)
    entries: dict[str, Rows | Value] = {"source": _well_input(path, h5, "source", n_samples)}
    entries.update(fields)
    if outputs != ["solution"]:
        entries["output_names"] = value_of(np.array(outputs, dtype=str))
    for name in inputs[1:]:
        entries[name] = _well_input(path, h5, name, n_samples)
    if len(inputs) > 1:
        entries["input_names"] = value_of(np.array(inputs[1:], dtype=str))
    entries.update(_well_coordinates(path, h5))
    if "boundary_conditions" in h5 and len(h5["boundary_conditions"]):
        entries["boundary"] = Value(lambda: well_boundary(path, h5))
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


def _well_outputs(path: Path, h5: h5py.File) -> list[str]:
    """The output fields in order: ``pdefm_outputs``, else ``solution``; each a t0_field."""
    outputs = _attr_strings(h5.attrs, "pdefm_outputs") or ["solution"]
    for name in outputs:
        if name not in h5["t0_fields"]:
            raise PdefmError(
                f"{path} has no t0_fields/{name}, an output; add it (N, nx, ny) or name the "
                "output fields in the root attribute pdefm_outputs"
            )
    return outputs


def _well_samples(path: Path, h5: h5py.File, output: Rows) -> int:
    """N: the output's first dimension, which n_trajectories (if given) must equal."""
    n_samples = int(output.shape[0]) if output.shape else 0
    given = h5.attrs.get("n_trajectories")
    if given is not None and int(np.asarray(given).reshape(-1)[0]) != n_samples:
        raise PdefmError(
            f"{path} has n_trajectories {int(np.asarray(given).reshape(-1)[0])} but "
            f"{output.label} holds {n_samples} samples; make them agree"
        )
    return n_samples


def _well_inputs(path: Path, h5: h5py.File, outputs: list[str]) -> list[str]:
    """The inputs in order, source first: ``pdefm_inputs``, else source, the other t0_fields
    and the scalars (but ``parameter``) in file order."""

    inputs = _attr_strings(h5.attrs, "pdefm_inputs")
    if inputs is None:
        fields = [k for k in h5["t0_fields"] if k not in (*outputs, "source")]
        scalars = [k for k in h5.get("scalars", {}) if k != "parameter"]
        inputs = ["source", *fields, *scalars]
    if not inputs or inputs[0] != "source":
        raise PdefmError(
            f"pdefm_inputs of {path} is {inputs}; pdefm's first input is the forcing field "
            "source: list it first (and name that field source)"
        )
    for name in inputs[1:]:
        if name in KNOWN_ARRAYS or name in outputs:
            raise PdefmError(
                f"pdefm_inputs of {path} names {name!r}, a name pdefm import reserves; rename "
                "that field or scalar"
            )
    return inputs


def _well_input(path: Path, h5: h5py.File, name: str, n_samples: int) -> Rows | Value:
    """An input: the field t0_fields/NAME, else the constant scalars/NAME, else the root
    attribute NAME of a constant simulation parameter (broadcast to (N,))."""
    if name in h5["t0_fields"]:
        return _well_field(path, h5["t0_fields"], name)
    scalars = h5.get("scalars")
    if isinstance(scalars, h5py.Group) and name in scalars:
        return _well_scalar(path, scalars, name, n_samples)
    parameters = _attr_strings(h5.attrs, "simulation_parameters") or []
    if name in parameters and name in h5.attrs and name not in ROOT_ATTRS:
        value = np.asarray(h5.attrs[name])
        if value.size == 1 and value.dtype.kind in "fiu":
            return value_of(np.full(n_samples, value.reshape(-1)[0], dtype=np.float64))
    if "pdefm_inputs" in h5.attrs:
        why, fix = "is listed in pdefm_inputs", "or drop it from pdefm_inputs"
    else:
        why, fix = "is pdefm's forcing input", "(name the forcing field source)"
    raise PdefmError(
        f"{name!r} {why} but {path} has neither t0_fields/{name} nor scalars/{name}; add it "
        f"as a (N, nx, ny) field or a (N,) constant {fix}"
    )


def _well_field(path: Path, fields: h5py.Group, name: str) -> Rows:
    item = fields[name]
    label = f"t0_fields/{name}"
    if not isinstance(item, h5py.Dataset):
        raise PdefmError(f"{label} in {path} is a group; store each field as a dataset")
    if bool(item.attrs.get("time_varying", False)):
        raise PdefmError(
            f"{label} in {path} varies in time (shape {item.shape}); pdefm imports steady "
            "problems: write one time step as (N, nx, ny), e.g. field[:, -1]"
        )
    return Rows(item, label)


def _well_scalar(path: Path, scalars: h5py.Group, name: str, n_samples: int) -> Value:
    """scalars/NAME as (N,) float64: (N,) per sample, or () one value for every sample."""
    item = scalars[name]
    values = np.asarray(item[()]) if isinstance(item, h5py.Dataset) else None
    if values is None or values.shape not in ((n_samples,), ()) or values.dtype.kind not in "fiu":
        shape = values.shape if values is not None else "a group"
        raise PdefmError(
            f"scalars/{name} in {path} is {shape}: expected ({n_samples},) numbers, one per "
            "trajectory, or () for one value"
        )
    return value_of(np.broadcast_to(values.astype(np.float64), (n_samples,)).copy())


def _well_coordinates(path: Path, h5: h5py.File) -> dict:
    """x and y as (nx, ny) grids indexed [x, y] from dimensions/ (spatial_dims order), or,
    without dimensions, x_axis 0 (fields are x first by the layout)."""
    dims = h5.get("dimensions")
    if not isinstance(dims, h5py.Group):
        return {"x_axis": value_of(0)}
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
    return {"x": value_of(x), "y": value_of(y)}


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
        out["parameter_name"] = value_of(name)
    return out


def _well_names(h5: h5py.File) -> dict:
    """family (pdefm_family, else a short dataset_name) and equation (pdefm_equation)."""

    out = {}
    family = _attr_text(h5.attrs, "pdefm_family")
    if family is None:  # The Well's names are short; one that is not is left to --family
        name = _attr_text(h5.attrs, "dataset_name")
        family = name if name and NAME.match(name) else None
    if family:
        out["family"] = value_of(family)
    equation = _attr_text(h5.attrs, "pdefm_equation")
    if equation:
        out["equation"] = value_of(equation)
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
