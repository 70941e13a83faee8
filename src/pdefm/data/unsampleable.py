"""Parameter values a family cannot sample within its redraw budget (Helmholtz w next to a
resonance): dropped from the declared support when asked, else a one-line error with the
measured acceptance and a budget that would do."""

from __future__ import annotations

import sys

from pdefm.data.blocks import UnsampleableError, redraw_budget
from pdefm.data.probe import (
    ValueProbe,
    needed_budget,
    probe_acceptance,
)
from pdefm.data.spec import GenerationSpec
from pdefm.errors import PdefmError


# -- parameter values that cannot be sampled within the redraw budget -----------------------
def resolve_unsampleable(
    spec: GenerationSpec, drop: bool
) -> tuple[GenerationSpec, dict[float, ValueProbe], list]:
    """Probe discrete parameter laws; refuse values whose measured acceptance is too low for
    the redraw budget, or drop them if asked."""
    probes = probe_acceptance(spec)
    budget = redraw_budget(spec.pde())
    short = [v for v, probe in probes.items() if not probe.sampleable(budget)]
    if not short:
        return spec, probes, []
    if not drop:
        raise PdefmError(_unsampleable_message(spec, probes, short, budget))
    exclude = sorted({*spec.family_config.get("exclude", []), *(int(v) for v in short)})
    spec = spec.with_family_config(exclude=exclude)
    spec.validate()
    name = spec.pde().parameter.name
    text = (
        f"{name} = {_values(short)} dropped from the declared law: {_rates(probes, short, name)}, "
        f"too few for the redraw budget of {budget:,} sources per sample (recorded in the card)"
    )
    print(f"warning: {text}", file=sys.stderr)
    return spec, probes, [text]


def _values(values: list[float]) -> str:
    return ", ".join(f"{v:g}" for v in values)


def _rates(probes: dict[float, ValueProbe], values: list[float], name: str) -> str:
    """What the probe measured for ``values``, at each one's worst sparsity level."""
    parts = []
    for v in values:
        level = probes[v].worst_level
        accepted, drawn = probes[v].levels[level]
        if accepted:
            parts.append(
                f"{name} = {v:g} accepts about 1 source in {drawn / accepted:,.0f} at "
                f"sparsity {level:g} ({accepted} of {drawn:,} probed)"
            )
        else:
            parts.append(
                f"{name} = {v:g} had no accepted source in {drawn:,} probed at sparsity {level:g} "
                f"(acceptance below {3 / drawn:.0e})"
            )
    return "; ".join(parts)


def _unsampleable_message(
    spec: GenerationSpec, probes: dict[float, ValueProbe], values: list[float], budget: int
) -> str:
    pde = spec.pde()
    name, limit = pde.parameter.name, getattr(pde, "max_abs_u", None)
    rates = [probes[v].min_rate for v in values]
    bigger = (
        f"generate it with --redraw-budget {needed_budget(min(rates)):d}, "
        if min(rates) > 0
        else ""
    )
    return (
        f"{spec.family} {name} = {_values(values)} is unsampleable within the redraw budget of "
        f"{budget:,} sources per sample (max |u| <= {limit:g}, next to a resonance): "
        f"{_rates(probes, values, name)}; {bigger}drop it with --drop-unsampleable, raise "
        "--max-abs-u, or change --range"
    )


def exhausted_message(spec: GenerationSpec, exc: UnsampleableError, probes: dict) -> str:
    name = spec.pde().parameter.name
    measured = [v for v in exc.values if v in probes]
    return (
        f"{spec.family} {name} = {_values(exc.values)}: a sample drew its whole redraw budget of "
        f"{exc.budget:,} sources without an accepted one"
        + (f" (the probe measured: {_rates(probes, measured, name)})" if measured else "")
        + f"; rerun with --redraw-budget {2 * exc.budget:d} or leave it out of --range "
        "(nothing was kept)"
    )
