"""Physics only: grids, sources and the PDE families, in torch (float64 for generation)."""

from __future__ import annotations

from pdefm.pdes.advection_diffusion import AdvectionDiffusion
from pdefm.pdes.base import Coefficients, ParameterSpec, PDEFamily
from pdefm.pdes.grid import Grid
from pdefm.pdes.helmholtz import Helmholtz
from pdefm.pdes.poisson import Poisson
from pdefm.pdes.sources import GaussianLatticeSource

FAMILIES: dict[str, type[PDEFamily]] = {
    cls.name: cls for cls in (Poisson, AdvectionDiffusion, Helmholtz)
}


def get_family(name: str, **config) -> PDEFamily:
    """The family called ``name`` with its constants overridden by ``config``."""
    if name not in FAMILIES:
        raise ValueError(f"unknown PDE family {name!r}; choose one of {', '.join(FAMILIES)}")
    cls = FAMILIES[name]
    try:
        return cls(**config)
    except TypeError as exc:
        raise ValueError(f"bad constants for family {name!r}: {exc}") from None


__all__ = [
    "FAMILIES",
    "AdvectionDiffusion",
    "Coefficients",
    "GaussianLatticeSource",
    "Grid",
    "Helmholtz",
    "PDEFamily",
    "ParameterSpec",
    "Poisson",
    "get_family",
]
