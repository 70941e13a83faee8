"""Physics only: grids, sources and the PDE families, in torch (float64 for generation)."""

from __future__ import annotations

from pdefm import catalogue
from pdefm.pdes.advection_diffusion import AdvectionDiffusion
from pdefm.pdes.base import Coefficients, ParameterSpec, PDEFamily
from pdefm.pdes.grid import Grid
from pdefm.pdes.helmholtz import Helmholtz
from pdefm.pdes.poisson import Poisson
from pdefm.pdes.sources import GaussianLatticeSource


def family_class(name: str) -> type[PDEFamily]:
    """The physics class of the registered family ``name`` (see :mod:`pdefm.catalogue`); a
    ValueError lists the registered families."""
    return catalogue.family(name).solver_class()


def get_family(name: str, **config) -> PDEFamily:
    """The family called ``name`` with its constants overridden by ``config``."""
    cls = family_class(name)
    try:
        return cls(**config)
    except TypeError as exc:
        raise ValueError(f"bad constants for family {name!r}: {exc}") from None


__all__ = [
    "AdvectionDiffusion",
    "Coefficients",
    "GaussianLatticeSource",
    "Grid",
    "Helmholtz",
    "PDEFamily",
    "ParameterSpec",
    "Poisson",
    "family_class",
    "get_family",
]
