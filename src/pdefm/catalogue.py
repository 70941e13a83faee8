"""The catalogue: every fact about the PDE families that code outside the solver needs.

One entry per family: its name, title, equation, declared parameter, default range, constant
coefficient channels, the largest parameter a dataset may declare, and where its solver lives
(``"module:Class"``, imported only when data is generated or a residual is computed). Also the
dataset splits, the union channel order of mixtures and the prefix of presence masks.

Imports no torch, so the CLI, the study checks, dataset inspection and reports read family facts
from here without loading the solver. Adding a family is one module in ``pdefm/pdes`` (the
physics: a :class:`pdefm.pdes.base.PDEFamily` subclass whose ``name`` is the entry's name) and
one :func:`register_family` call; the built-in entries are registered below.
"""

from __future__ import annotations

import importlib
import re
from dataclasses import dataclass
from typing import Any

SPLITS = ("train", "val", "test")
#: Input channel 0 of every dataset: the forcing field f(x, y).
SOURCE_CHANNEL = "source"
#: Presence channel of coefficient X in a mixture built with masks: ``has_X``.
MASK_PREFIX = "has_"
#: The family name of a dataset mixed from several families (never a registered family).
MIXTURE = "mixture"
_NAME = re.compile(r"^[a-z][a-z0-9_]*$")
_CHANNEL = re.compile(r"^[A-Za-z0-9_.\-]+$")


@dataclass(frozen=True)
class ParameterSpec:
    """The physics parameter a dataset is declared over (the axis of distribution shift)."""

    name: str
    description: str
    integer: bool = False


@dataclass(frozen=True)
class FamilyEntry:
    """What pdefm knows about a family without importing its solver.

    ``coefficient_channels`` are the constant input channels, in order, after ``source`` and
    the ``field_channels`` (inputs that vary in space, e.g. a permeability a(x));
    ``max_parameter`` is the largest parameter a generated dataset may declare and
    ``max_reason`` says why (printed in the refusal). ``solver`` is the physics class, given as
    ``"package.module:Class"`` (imported lazily) or as the class itself.
    """

    name: str
    title: str
    equation: str
    parameter: ParameterSpec
    default_range: tuple[float, float]
    coefficient_channels: tuple[str, ...]
    max_parameter: float
    max_reason: str
    solver: str | type
    field_channels: tuple[str, ...] = ()

    @property
    def input_channels(self) -> tuple[str, ...]:
        """Named input channels: the source, the input fields, then each constant channel."""
        return (SOURCE_CHANNEL, *self.field_channels, *self.coefficient_channels)

    def solver_class(self) -> type:
        """The physics class (imports torch for the built-in families)."""
        if not isinstance(self.solver, str):
            return self.solver
        module, _, attribute = self.solver.partition(":")
        return getattr(importlib.import_module(module), attribute)


_FAMILIES: dict[str, FamilyEntry] = {}


def register_family(entry: FamilyEntry) -> FamilyEntry:
    """Add ``entry`` to the catalogue; its coefficient channels new to the catalogue join the
    end of the union channel order (so mixtures written before keep their layout). A
    ValueError names what is wrong with the entry."""
    _check_entry(entry)
    _FAMILIES[entry.name] = entry
    return entry


def unregister_family(name: str) -> None:
    """Remove a family registered by :func:`register_family` (built-ins cannot be removed)."""
    if name in BUILT_IN:
        raise ValueError(f"{name!r} is a built-in family and cannot be removed")
    _FAMILIES.pop(name, None)


def _check_entry(entry: FamilyEntry) -> None:
    if not _NAME.match(entry.name):
        raise ValueError(
            f"family name {entry.name!r} must be lower case letters, digits and '_', "
            "starting with a letter"
        )
    if entry.name in _FAMILIES or entry.name == MIXTURE:
        raise ValueError(f"a family named {entry.name!r} is already registered; pick another name")
    low, high = entry.default_range
    if not low <= high:
        raise ValueError(f"family {entry.name!r}: default range [{low}, {high}] is inverted")
    channels = (*entry.field_channels, *entry.coefficient_channels)
    bad = [c for c in channels if not _CHANNEL.match(c) or c.startswith(MASK_PREFIX)]
    if bad or SOURCE_CHANNEL in channels or len(set(channels)) != len(channels):
        raise ValueError(
            f"family {entry.name!r}: coefficient channels {channels} must be distinct names of "
            f"letters, digits, '_', '-', '.', not 'source' and not starting with {MASK_PREFIX!r}"
        )


def family(name: str) -> FamilyEntry:
    """The entry of ``name``; a ValueError lists the registered families."""
    if name not in _FAMILIES:
        raise ValueError(f"unknown PDE family {name!r}; choose one of {', '.join(_FAMILIES)}")
    return _FAMILIES[name]


def family_names() -> tuple[str, ...]:
    """Registered family names, built-ins first, in registration order."""
    return tuple(_FAMILIES)


def is_family(name: Any) -> bool:
    """True if ``name`` is a registered family."""
    return isinstance(name, str) and name in _FAMILIES


def union_order() -> tuple[str, ...]:
    """The fixed input channel order of mixtures: ``source``, then every registered family's
    coefficient channels in registration order, each once."""
    order = [SOURCE_CHANNEL]
    for entry in _FAMILIES.values():
        order += [c for c in entry.coefficient_channels if c not in order]
    return tuple(order)


def mask_name(channel: str) -> str:
    """The presence channel of coefficient ``channel``: ``has_<channel>``."""
    return f"{MASK_PREFIX}{channel}"


def family_title(name: str | None) -> str:
    """ "Poisson", "Advection-diffusion", "Mixture"; an unknown family as given ("?" for
    None)."""
    if name is None:
        return "?"
    if name == MIXTURE:
        return "Mixture"
    return _FAMILIES[name].title if name in _FAMILIES else name


def parameter_name(name: str | None) -> str | None:
    """The short name of a family's parameter ("e", "psi", "w"); None if unknown."""
    return _FAMILIES[name].parameter.name if name in _FAMILIES else None


_DIFFUSION = ("diffusion_xx", "diffusion_yy", "diffusion_xy")

BUILT_IN = ("poisson", "advection_diffusion", "helmholtz", "darcy")
register_family(
    FamilyEntry(
        name="poisson",
        title="Poisson",
        equation="-c div(K grad u) = f, K = R(-t) diag(1, e) R(t)",
        parameter=ParameterSpec("e", "eigenvalue ratio of the diffusion tensor K"),
        default_range=(1.0, 5.0),
        coefficient_channels=_DIFFUSION,
        max_parameter=1e4,
        max_reason="a larger eigenvalue ratio of K is all but degenerate in float32 storage",
        solver="pdefm.pdes.poisson:Poisson",
    )
)
register_family(
    FamilyEntry(
        name="advection_diffusion",
        title="Advection-diffusion",
        equation="-(1-l) c div(K grad u) + l v.grad u = f, |v| = 1",
        parameter=ParameterSpec(
            "psi", "advection-to-diffusion ratio ||l v.grad u|| / ||(1-l) c div(K grad u)||"
        ),
        default_range=(0.2, 1.0),
        coefficient_channels=(*_DIFFUSION, "velocity_x", "velocity_y"),
        max_parameter=1e3,
        max_reason="larger ratios are pure advection to float precision",
        solver="pdefm.pdes.advection_diffusion:AdvectionDiffusion",
    )
)
register_family(
    FamilyEntry(
        name="helmholtz",
        title="Helmholtz",
        equation="-c lap u - w u = f",
        parameter=ParameterSpec("w", "wavenumber (integer, uniform over the range)", integer=True),
        default_range=(1.0, 10.0),
        coefficient_channels=("helmholtz_c", "helmholtz_w"),
        max_parameter=1000,
        max_reason="every integer w is its own value to probe",
        solver="pdefm.pdes.helmholtz:Helmholtz",
    )
)
register_family(
    FamilyEntry(
        name="darcy",
        title="Darcy",
        equation="-c div(a(x) grad u) = f, a in [1, contrast]",
        parameter=ParameterSpec("contrast", "ratio max a / min a of the coefficient field a(x)"),
        default_range=(1.0, 10.0),
        coefficient_channels=("diffusion_xy",),
        max_parameter=1e4,
        max_reason="PCG iterations grow like the square root of the contrast",
        solver="pdefm.pdes.darcy:Darcy",
        field_channels=("diffusion_xx", "diffusion_yy"),
    )
)
