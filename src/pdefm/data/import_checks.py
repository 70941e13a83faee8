"""Every check of an import's input before anything is written: array names, shapes and
dtypes, coefficient and parameter arrays, family and equation names, finite values (with the
sample index); the result is an ``ImportLayout``."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from pdefm import catalogue
from pdefm.data.import_files import _HELP, Arrays
from pdefm.data.import_grid import GRID_ARRAYS, GridInfo, read_grid
from pdefm.data.import_inputs import (
    CONSTANT,
    FIELD,
    NAME,
    declared_inputs,
    declared_outputs,
    input_kind,
    strings_of,
)
from pdefm.errors import PdefmError

MIN_RESOLUTION = 8


MIN_SAMPLES = 3  # one per split


BLOCK_SIZE = 64  # rows per write and per content-hash block


DEFAULT_FAMILY = "custom"


DEFAULT_EQUATION = "not given (imported data)"


KNOWN_ARRAYS = (
    "source",
    "solution",
    "coefficients",
    "coefficient_names",
    "parameter",
    "parameter_name",
    "family",
    "equation",
    "input_names",
    "output_names",
    *GRID_ARRAYS,
)


_NAME = NAME


@dataclass(frozen=True)
class ImportLayout:
    """What validation found: sizes, names and the small per-sample arrays (read whole).

    The model inputs are ``source`` (a field, or a constant broadcast to one), then the
    declared inputs in their order, then the ``coefficients`` columns; ``fields`` names the
    declared inputs that are fields and ``coefficient_names`` the constant ones (with the
    coefficients columns), in input order, matching ``coefficients``' columns."""

    n_samples: int
    resolution: int
    coefficient_names: tuple[str, ...]
    coefficients: np.ndarray  # (N, K) float64
    parameter: np.ndarray  # (N,) float64, zeros when the file has none
    parameter_name: str  # "none" when the file has no parameter
    family: str
    equation: str
    grid: GridInfo  # x axis of the file, domain, boundary of each side
    inputs: tuple[str, ...] = ()  # every input after source, in order; () = the coefficients
    fields: tuple[str, ...] = ()  # the inputs after source that are fields
    source_constant: bool = False  # source given as (N,): stored broadcast to a plane
    outputs: tuple[str, ...] = ("solution",)  # the output arrays; the first is stored as solution

    @property
    def input_channels(self) -> list[str]:
        return ["source", *(self.inputs or self.coefficient_names)]


def validate(
    arrays: Arrays,
    family: str | None = None,
    equation: str | None = None,
    inputs: list[str] | None = None,
    x_axis: int | None = None,
    boundary: str | None = None,
    outputs: list[str] | None = None,
) -> ImportLayout:
    """Check every array of the input (names, ranks, shapes, counts, values) and return its
    ``ImportLayout``; the first problem is a one-line PdefmError naming the array and the fix.
    ``inputs`` names the inputs besides source (default: the file's ``input_names``);
    ``x_axis`` and ``boundary`` describe the grid (see ``import_grid.read_grid``); ``outputs``
    names the output fields (default: the file's ``output_names``, else ``solution``)."""
    out_names = declared_outputs(arrays, outputs, KNOWN_ARRAYS)
    declared = declared_inputs(arrays, inputs, KNOWN_ARRAYS, out_names)
    _check_names(arrays, declared, out_names)
    kinds = {name: input_kind(arrays, name) for name in declared}
    source_constant = "source" in arrays.names and input_kind(arrays, "source") == CONSTANT
    fields = [name for name in declared if kinds[name] == FIELD]
    spatial = ([] if source_constant else ["source"]) + [*out_names, *fields]
    n, resolution = _check_fields(arrays, spatial)
    grid = read_grid(arrays, resolution, x_axis, boundary)
    names, coefficients = _read_coefficients(arrays, n)
    constants = [name for name in declared if kinds[name] == CONSTANT]
    names, coefficients = _with_constants(arrays, constants, names, coefficients, n)
    parameter, parameter_name = _read_parameter(arrays, n)
    family = _check_family(family if family is not None else _file_string(arrays, "family"))
    equation = equation if equation is not None else _file_string(arrays, "equation")
    if source_constant:
        _check_finite_rows("source", arrays.whole("source"))
    for name in spatial:
        _scan_field(arrays, name, n)
    return ImportLayout(
        n_samples=n,
        resolution=resolution,
        coefficient_names=names,
        coefficients=coefficients,
        parameter=parameter,
        parameter_name=parameter_name,
        family=family,
        equation=equation or DEFAULT_EQUATION,
        inputs=(*declared, *names[len(constants) :]) if declared else (),
        fields=tuple(fields),
        source_constant=source_constant,
        grid=grid,
        outputs=tuple(out_names),
    )


def _with_constants(
    arrays: Arrays, constants: list[str], names: tuple[str, ...], values: np.ndarray, n: int
) -> tuple[tuple[str, ...], np.ndarray]:
    """The declared constant inputs (N,) first, then the coefficients columns."""
    for name in constants:
        if name in names:
            raise PdefmError(
                f"input {name!r} is also a coefficient_names entry; give each input once"
            )
        _check_real(arrays, name)
        if arrays.shape(name) != (n,):
            raise PdefmError(
                f"{name} has shape {arrays.shape(name)}: a constant input needs (N,) = ({n},)"
            )
    columns = [np.asarray(arrays.whole(name), dtype=np.float64) for name in constants]
    for name, col in zip(constants, columns, strict=True):
        _check_finite_rows(name, col)
    if not columns:
        return names, values
    return (*constants, *names), np.column_stack([*columns, values])


def _check_names(arrays: Arrays, declared: list[str], outputs: list[str]) -> None:
    for name in ("source", *outputs):
        if name not in arrays.names:
            found = ", ".join(arrays.names) or "nothing"
            shape = "(N, n, n) or, for a constant forcing, (N,)" if name == "source" else ""
            raise PdefmError(
                f"{arrays.path} has no array `{name}` (found: {found}); add it as {shape} ({_HELP})"
            )
    known = {*KNOWN_ARRAYS, *declared, *outputs}
    unknown = [k for k in arrays.names if k not in known]
    if unknown:
        raise PdefmError(
            f"{arrays.path} holds unknown array `{unknown[0]}`; list it as an input or output "
            f"(--inputs / --outputs {unknown[0]}, or input_names / output_names in the file), "
            "rename it to one of "
            f"{', '.join(KNOWN_ARRAYS)}, or remove it"
        )


def _check_fields(arrays: Arrays, names: list[str]) -> tuple[int, int]:
    """The field arrays (source first when it is one, solution, the declared input fields):
    rank, one channel, equal sample counts and square equal grids."""
    shapes = {name: _field_shape(arrays, name) for name in names}
    first = names[0]
    n, *grid = shapes[first]
    for name in names[1:]:
        n_other, *grid_other = shapes[name]
        if n_other != n:
            raise PdefmError(
                f"{name} has {n_other} samples but {first} has {n}; give every array the same "
                "first dimension N"
            )
        if grid_other != grid:
            raise PdefmError(
                f"{name} grid {tuple(grid_other)} differs from {first} grid {tuple(grid)}; "
                "sample every field on the same n x n grid"
            )
    if "source" in arrays.names and first != "source" and arrays.shape("source")[0] != n:
        raise PdefmError(
            f"source has {arrays.shape('source')[0]} samples but {first} has {n}; give every "
            "array the same first dimension N"
        )
    if grid[0] != grid[1]:
        raise PdefmError(
            f"{first} grid is {grid[0]} x {grid[1]}, not square; resample every field onto "
            "an n x n grid"
        )
    if grid[0] < MIN_RESOLUTION:
        raise PdefmError(
            f"source grid {grid[0]} x {grid[0]} is too small; give at least "
            f"{MIN_RESOLUTION} x {MIN_RESOLUTION} points"
        )
    if n < MIN_SAMPLES:
        raise PdefmError(
            f"source has {n} samples; give at least {MIN_SAMPLES} (one each for train, val, test)"
        )
    return n, grid[0]


def _field_shape(arrays: Arrays, name: str) -> tuple[int, int, int]:
    """(N, n, m) of a field given as (N, n, m) or (N, 1, n, m)."""
    shape = tuple(arrays.shape(name))
    _check_real(arrays, name)
    if len(shape) == 4 and shape[1] != 1:
        if name == "solution":
            raise PdefmError(
                f"solution has shape {shape}: {shape[1]} output channels in one array; give "
                "each output its own name (e.g. u = solution[:, 0], v = solution[:, 1]) and "
                "list them with --outputs u,v"
            )
        raise PdefmError(
            f"{name} has shape {shape}: {shape[1]} channels in one field; give each its own "
            "name and list them as inputs (--inputs), or pass constants as (N,) arrays"
        )
    if len(shape) not in (3, 4):
        constant = "" if name == "solution" else " for a field, or (N,) for a constant"
        raise PdefmError(f"{name} has shape {shape}: expected (N, n, n) or (N, 1, n, n){constant}")
    return (shape[0], shape[-2], shape[-1])


def _check_real(arrays: Arrays, name: str) -> None:
    if arrays.dtype(name).kind not in "fiu":
        raise PdefmError(
            f"{name} has dtype {arrays.dtype(name)}: expected real numbers; convert it with "
            ".astype(np.float32)"
        )


def _read_coefficients(arrays: Arrays, n: int) -> tuple[tuple[str, ...], np.ndarray]:
    """Names and values (N, K) float64 of the constant channels; K = 0 when there are none."""
    has_values, has_names = "coefficients" in arrays.names, "coefficient_names" in arrays.names
    if has_names and not has_values:
        raise PdefmError(
            "coefficient_names is given without coefficients; add coefficients (N, K) or "
            "remove coefficient_names"
        )
    if not has_values:
        return (), np.zeros((n, 0))
    if not has_names:
        raise PdefmError(
            "coefficients has unnamed channels; add coefficient_names (K,) strings, e.g. "
            "np.array(['diffusion_xx', 'diffusion_yy'])"
        )
    _check_real(arrays, "coefficients")
    values = arrays.whole("coefficients")
    if values.ndim != 2 or values.shape[0] != n:
        raise PdefmError(
            f"coefficients has shape {values.shape}: expected (N, K) = ({n}, K), one row per "
            "sample; reshape it, e.g. coefficients.reshape(N, -1)"
        )
    names = strings_of(arrays, "coefficient_names")
    if len(names) != values.shape[1]:
        raise PdefmError(
            f"coefficient_names has {len(names)} names but coefficients has {values.shape[1]} "
            "columns; give one name per column"
        )
    _check_channel_names(names)
    _check_finite_rows("coefficients", values)
    return tuple(names), np.ascontiguousarray(values, dtype=np.float64)


def _check_channel_names(names: list[str]) -> None:
    for name in names:
        if not _NAME.match(name):
            raise PdefmError(
                f"coefficient_names holds {name!r}; use letters, digits, '_', '-', '.' (e.g. "
                "diffusion_xx) and no empty names"
            )
        if name in ("source", "solution"):
            raise PdefmError(
                f"coefficient_names holds {name!r}, the name of a field; rename that channel"
            )
    duplicate = next((k for k in names if names.count(k) > 1), None)
    if duplicate is not None:
        raise PdefmError(f"coefficient_names holds {duplicate!r} twice; give each channel once")


def _read_parameter(arrays: Arrays, n: int) -> tuple[np.ndarray, str]:
    """The per-sample parameter (N,) float64 and its name; zeros and "none" when absent."""
    has_name = "parameter_name" in arrays.names
    if "parameter" not in arrays.names:
        if has_name:
            raise PdefmError(
                "parameter_name is given without parameter; add parameter (N,) or remove "
                "parameter_name"
            )
        return np.zeros(n), "none"
    _check_real(arrays, "parameter")
    values = arrays.whole("parameter")
    if values.shape != (n,):
        raise PdefmError(
            f"parameter has shape {values.shape}: expected (N,) = ({n},), one value per "
            "sample; flatten it with parameter.reshape(-1)"
        )
    _check_finite_rows("parameter", values)
    name = _file_string(arrays, "parameter_name") if has_name else "parameter"
    if not name or not _NAME.match(name):
        raise PdefmError(
            f"parameter_name is {name!r}; use letters, digits, '_', '-', '.' (e.g. kappa)"
        )
    return np.asarray(values, dtype=np.float64), name


def _check_family(family: str) -> str:
    family = family or DEFAULT_FAMILY
    # a dataset named like a registered family would get that family's physics residual,
    # computed with the wrong operator
    if catalogue.is_family(family.lower()):
        raise PdefmError(
            f"family {family!r} is a registered pdefm family (whose operator gives physics "
            f"residuals); pick another name, e.g. {family.lower()}-own"
        )
    if not _NAME.match(family):
        raise PdefmError(
            f"family {family!r} is not a short name; use letters, digits, '_', '-', '.' "
            "(e.g. darcy-own)"
        )
    return family


def _file_string(arrays: Arrays, name: str) -> str:
    """An optional scalar string of the file ('' when absent)."""
    if name not in arrays.names:
        return ""
    value = arrays.whole(name)
    item = value.reshape(-1)[0] if value.size == 1 else None
    if isinstance(item, bytes):
        item = item.decode()
    if not isinstance(item, str):
        raise PdefmError(f"{name} must be one string, e.g. np.savez(..., {name}='...')")
    return item.strip()


def _check_finite_rows(name: str, values: np.ndarray, offset: int = 0) -> None:
    """NaN/Inf (or, for fields, values float32 cannot hold) name the first bad sample."""
    flat = np.asarray(values).reshape(len(values), -1)
    bad = ~np.isfinite(flat).all(axis=1)
    if bad.any():
        i = offset + int(bad.argmax())
        raise PdefmError(
            f"{name} sample {i} holds NaN or Inf; fix or drop sample {i} (in every array)"
        )


def _scan_field(arrays: Arrays, name: str, n: int) -> None:
    """Check every sample of a field, a block at a time, for NaN/Inf and float32 overflow."""
    limit = np.finfo(np.float32).max
    for a in range(0, n, BLOCK_SIZE):
        block = arrays.rows(name, np.arange(a, min(a + BLOCK_SIZE, n)))
        _check_finite_rows(name, block, a)
        big = (np.abs(block.reshape(len(block), -1)) > limit).any(axis=1)
        if big.any():
            i = a + int(big.argmax())
            raise PdefmError(
                f"{name} sample {i} exceeds the float32 range (|x| > {limit:.3g}); rescale "
                f"{name} (pdefm stores fields as float32)"
            )
