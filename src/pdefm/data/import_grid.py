"""The grid of an import: which array axis is x, the domain, and the boundary condition of each
side, from the file (coordinate arrays ``x``, ``y``; scalars ``x_axis``, ``boundary``) and the
flags (``--x-axis``, ``--boundary``), checked against each other.

pdefm stores every field with x along array axis 0 (``field[sample, i_x, i_y]``); a file with x
along axis 1 (``field[sample, i_y, i_x]``, numpy's ``meshgrid`` default) is transposed on
import. The axis matters: a transposed field swaps the roles of x and y, so anisotropic
coefficients, velocities and boundary sides would silently describe another problem. When the
file cannot say which axis is x (no 2-D coordinate arrays), import asks for it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from pdefm.data.import_files import Arrays
from pdefm.errors import PdefmError

BOUNDARY_TAGS = ("periodic", "dirichlet", "neumann")
SIDES = ("x_low", "x_high", "y_low", "y_high")
GRID_ARRAYS = ("x", "y", "x_axis", "boundary")
_AXIS_HELP = (
    "pass --x-axis 0 if fields are indexed [sample, x, y] (pdefm's convention) or --x-axis 1 "
    "if [sample, y, x] (numpy meshgrid's default), or store 2-D coordinate arrays x and y; "
    "a transposed field swaps x and y and silently changes anisotropic physics"
)


@dataclass(frozen=True)
class GridInfo:
    """The grid as the card records it (after any transpose, x is axis 0)."""

    file_x_axis: int  # the file's axis holding x: 1 means fields are transposed on import
    boundary: tuple[tuple[str, str], ...]  # (side, tag) for x_low, x_high, y_low, y_high
    domain: tuple[tuple[float, float], tuple[float, float]]  # [x0, x1], [y0, y1]
    coordinates: bool  # taken from the file's coordinate arrays (else the unit square)
    point_range: tuple[tuple[float, float], ...] = ()  # [first, last] point per axis, if known

    @property
    def periodic(self) -> bool:
        return all(tag == "periodic" for _, tag in self.boundary)

    def card(self, n: int) -> dict:
        """The card's ``grid`` entry for an n x n grid."""
        points = "from the file's coordinate arrays" if self.coordinates else (
            "x_i = i / n" if self.periodic else "not given (unit square assumed)"
        )  # fmt: skip
        return {
            "resolution": n,
            "domain": [list(self.domain[0]), list(self.domain[1])],
            "periodic": self.periodic,
            "points": points,
            "point_range": [list(r) for r in self.point_range] or _unit_points(n, self.periodic),
            "x_axis": 0,
            "boundary": dict(self.boundary),
        }


def _unit_points(n: int, periodic: bool) -> list[list[float]]:
    """Points of the unit square without coordinates: x_i = i / n when periodic, else n
    points from 0 to 1 (an assumption the card's ``points`` says it is)."""
    last = (n - 1) / n if periodic else 1.0
    return [[0.0, last], [0.0, last]]


def parse_boundary(text: str) -> dict[str, str]:
    """``periodic`` (every side), ``x=periodic,y=dirichlet`` (both sides of an axis) or
    ``x_low=dirichlet,x_high=neumann,...`` (one side), later items overriding earlier ones;
    every side must end up with a tag and periodic sides come in pairs."""
    sides: dict[str, str] = {}
    for item in (part.strip() for part in str(text).split(",")):
        if not item:
            continue
        where, _, tag = item.rpartition("=")
        tag = tag.strip().lower()
        if tag not in BOUNDARY_TAGS:
            raise PdefmError(
                f"boundary {tag!r} is not known; use one of {', '.join(BOUNDARY_TAGS)} "
                "(e.g. --boundary dirichlet or --boundary x=periodic,y=dirichlet)"
            )
        targets = {"": SIDES, "x": SIDES[:2], "y": SIDES[2:]}.get(where.strip(), (where.strip(),))
        for side in targets:
            if side not in SIDES:
                raise PdefmError(
                    f"boundary side {side!r} is not known; use x, y or one of {', '.join(SIDES)}"
                )
            sides[side] = tag
    missing = [side for side in SIDES if side not in sides]
    if missing:
        raise PdefmError(f"boundary gives no condition for {', '.join(missing)}; add them")
    for axis in ("x", "y"):
        low, high = sides[f"{axis}_low"], sides[f"{axis}_high"]
        if (low == "periodic") != (high == "periodic"):
            raise PdefmError(
                f"boundary is periodic on one {axis} side only ({low}, {high}); periodic "
                "applies to both sides of an axis"
            )
    return sides


def read_grid(
    arrays: Arrays, n: int, x_axis: int | None = None, boundary: str | None = None
) -> GridInfo:
    """The grid of an n x n import: the x axis (flag, else the file's ``x_axis``, else from
    2-D coordinate arrays; a contradiction is an error), the boundary (flag, else the file's
    ``boundary``, else periodic) and the domain (coordinate arrays, else the unit square)."""
    coords = _coordinates(arrays, n)
    given = x_axis if x_axis is not None else _file_axis(arrays)
    inferred = _axis_from_coordinates(coords) if coords else None
    if given is not None and given not in (0, 1):
        raise PdefmError(f"--x-axis must be 0 or 1, got {given!r}")
    if given is not None and inferred is not None and given != inferred:
        raise PdefmError(
            f"x axis {given} contradicts the coordinate arrays: x varies along axis "
            f"{inferred} of the fields; drop --x-axis or pass --x-axis {inferred}"
        )
    axis = given if given is not None else inferred
    if axis is None:
        raise PdefmError(f"which array axis of the fields is x is not known: {_AXIS_HELP}")
    if boundary is None:
        boundary = _file_text(arrays, "boundary") or "periodic"
    sides = parse_boundary(boundary)
    domain = _domain(coords, axis, sides) if coords else ((0.0, 1.0), (0.0, 1.0))
    points = _point_range(coords, axis) if coords else ()
    return GridInfo(axis, tuple(sides.items()), domain, bool(coords), points)


def _coordinates(arrays: Arrays, n: int) -> dict[str, np.ndarray]:
    """The file's ``x`` and ``y``: both or neither, each (n,) or (n, n), finite, monotonic."""
    present = [k for k in ("x", "y") if k in arrays.names]
    if not present:
        return {}
    if len(present) == 1:
        other = "y" if present[0] == "x" else "x"
        raise PdefmError(f"the file has coordinate array {present[0]} but no {other}; add both")
    out = {}
    for name in ("x", "y"):
        values = np.asarray(arrays.whole(name), dtype=np.float64)
        if values.shape not in ((n,), (n, n)) or not np.isfinite(values).all():
            raise PdefmError(
                f"coordinate array {name} has shape {values.shape}: expected ({n},) or "
                f"({n}, {n}) finite values matching the {n} x {n} fields"
            )
        out[name] = values
    if out["x"].ndim != out["y"].ndim:
        raise PdefmError("coordinate arrays x and y must both be 1-D or both 2-D")
    return out


def _axis_from_coordinates(coords: dict[str, np.ndarray]) -> int | None:
    """2-D coordinates say which axis x varies along; 1-D ones (on a square grid) cannot."""
    x = coords["x"]
    if x.ndim == 1:
        return None
    along = [bool(np.ptp(x, axis=k).max() > 0) for k in (0, 1)]
    if along == [True, False]:
        return 0
    if along == [False, True]:
        return 1
    raise PdefmError(
        "coordinate array x varies along both axes (or neither); give a rectilinear grid "
        "(x constant along one axis)"
    )


def _domain(coords: dict[str, np.ndarray], axis: int, sides: dict[str, str]) -> tuple:
    """[low, high] per direction: the coordinates' range, widened by one spacing on periodic
    axes (the last point is one step short of the period)."""
    out = []
    for name, direction in (("x", axis), ("y", 1 - axis)):
        values = coords[name]
        line = values if values.ndim == 1 else np.moveaxis(values, direction, 0)[:, 0]
        step = np.diff(line)
        if not ((step > 0).all() or (step < 0).all()):
            raise PdefmError(f"coordinate array {name} is not monotonic; sort the grid")
        low, high = float(line.min()), float(line.max())
        if sides[f"{name}_low"] == "periodic":
            high += float(np.abs(step).mean())
        out.append((low, high))
    return tuple(out)


def _point_range(coords: dict[str, np.ndarray], axis: int) -> tuple:
    """[first, last] coordinate along x and along y, in pdefm's order (x first)."""
    out = []
    for name, direction in (("x", axis), ("y", 1 - axis)):
        values = coords[name]
        line = values if values.ndim == 1 else np.moveaxis(values, direction, 0)[:, 0]
        out.append((float(line[0]), float(line[-1])))
    return tuple(out)


def _file_axis(arrays: Arrays) -> int | None:
    if "x_axis" not in arrays.names:
        return None
    value = np.asarray(arrays.whole("x_axis"))
    if value.size != 1 or value.dtype.kind not in "iu":
        raise PdefmError("x_axis must be one integer, 0 or 1, e.g. np.savez(..., x_axis=0)")
    return int(value.reshape(-1)[0])


def _file_text(arrays: Arrays, name: str) -> str:
    if name not in arrays.names:
        return ""
    value = np.asarray(arrays.whole(name)).reshape(-1)
    item = value[0] if value.size == 1 else None
    item = item.decode() if isinstance(item, bytes) else item
    if not isinstance(item, str):
        raise PdefmError(f"{name} must be one string, e.g. np.savez(..., {name}='dirichlet')")
    return item
