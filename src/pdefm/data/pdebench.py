"""PDEBench 2D Darcy flow files, read as they are. Their HDF5 files hold top-level datasets

    nu            (N, n, n)     the coefficient a(x)
    tensor        (N, 1, n, n)  the solution u of -div(a grad u) = beta on (0, 1)^2, u = 0 on
                                the boundary
    x-coordinate  (n,), y-coordinate (n,), t-coordinate   the points (t is unused)

and the constant forcing beta only in the file name (``2D_DarcyFlow_beta1.0_Train.hdf5``).
``darcy_entries`` presents them under the import format's names, in the channel layout of a
Poisson checkpoint: source = beta (a constant), diffusion_xx = diffusion_yy = nu,
diffusion_xy = 0, solution = tensor[:, 0], boundary dirichlet. Fields are read by rows."""

from __future__ import annotations

import re
from pathlib import Path

import h5py
import numpy as np

from pdefm.data.interop_arrays import Rows, value_of
from pdefm.errors import PdefmError

DARCY_FAMILY = "pdebench-darcy"
DARCY_INPUTS = ("diffusion_xx", "diffusion_yy", "diffusion_xy")
# "1.0", "0.01", "1e-2", "100": a number right after "beta" in the file name
_BETA_IN_NAME = re.compile(r"beta([0-9]+(?:\.[0-9]*)?(?:[eE][+-]?[0-9]+)?)")


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


def darcy_entries(path: Path, h5: h5py.File, beta: float | None) -> dict:
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
        "source": value_of(np.full(n_samples, beta)),
        "solution": Rows(tensor, "tensor", channel=0),
        "diffusion_xx": Rows(nu, "nu"),
        "diffusion_yy": Rows(nu, "nu"),  # isotropic: the same rows, read again per block
        "diffusion_xy": value_of(np.zeros(n_samples)),
        "input_names": value_of(np.array(DARCY_INPUTS)),
        "boundary": value_of("dirichlet"),
        "family": value_of(DARCY_FAMILY),
        "equation": value_of(darcy_equation(beta)),
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
        out[name] = value_of(values)
    return out
