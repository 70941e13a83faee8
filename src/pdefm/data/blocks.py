"""Generating one block of samples in memory (float64): sources, parameters, solutions.

A block is the unit of randomness and of writing: block b of a split holds samples
[b * block_size, (b + 1) * block_size) and draws from its own generator, so it can be produced
alone, in any order, and always comes out the same.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import torch

from pdefm.data.spec import GenerationSpec
from pdefm.pdes import Coefficients, Grid, PDEFamily

DEFAULT_REDRAW_BUDGET = 2000  # sources drawn per sample before giving up (families may set it)
ROUND_DRAWS = 256  # most candidate sources drawn in one redraw round


class UnsampleableError(RuntimeError):
    """Some parameter values had no accepted source within the redraw budget."""

    def __init__(self, values: list[float], budget: int):
        super().__init__(f"no accepted source in {budget} draws for parameter values {values}")
        self.values = values
        self.budget = budget


@dataclass
class Block:
    """One block of generated samples; fields are float64 tensors with leading size B."""

    source: torch.Tensor  # (B, n, n)
    solution: torch.Tensor  # (B, n, n)
    parameter: torch.Tensor  # (B,) the declared parameter
    coefficients: Coefficients  # name -> (B,)
    channels: torch.Tensor  # (B, C) constant coefficient channels
    fields: dict[str, torch.Tensor]  # input fields besides the source: channel -> (B, n, n)
    sparsity: torch.Tensor  # (B,) inactive probability vf of each source
    attempts: torch.Tensor  # (B,) int64: sources drawn until accepted (1 = first)


def redraw_budget(pde) -> int:
    """Source draws each sample of ``pde`` may make (families without one: the default)."""
    return getattr(pde, "redraw_budget", DEFAULT_REDRAW_BUDGET)


def _solve_batch(
    spec: GenerationSpec,
    pde: PDEFamily,
    grid: Grid,
    gen: torch.Generator,
    parameter: torch.Tensor,
    sparsity: torch.Tensor,
) -> tuple[torch.Tensor, Coefficients, torch.Tensor]:
    """Draw sources for the given parameters and solve: returns f, coeffs, u, where coeffs
    also holds the family's input fields (B, n, n) under their channel names."""
    f = pde.sample_source(spec.source, gen, sparsity, grid)
    coeffs, fields, u = pde.sample_solution(gen, parameter, f, grid)
    return f, {**coeffs, **fields}, u


def generate_block(spec: GenerationSpec, split: str, block: int) -> Block:
    """Generate block ``block`` of ``split`` (see the module docstring).

    Samples whose solution the family rejects keep their parameter and sparsity level and get
    fresh sources, so the declared parameter law is honoured exactly (see ``_redraw``).
    """
    pde, grid = spec.pde(), spec.grid()
    gen = spec.block_generator(split, block)
    start, stop = spec.block_range(split, block)
    sparsity = spec.source.sparsity_of_index(torch.arange(start, stop))
    parameter = pde.sample_parameter(gen, stop - start, spec.low, spec.high)
    f, coeffs, u = _solve_batch(spec, pde, grid, gen, parameter, sparsity)
    attempts = torch.ones(stop - start, dtype=torch.int64)
    rejected = ~pde.accept(u)
    if rejected.any():
        _redraw(spec, pde, grid, gen, (parameter, sparsity, f, coeffs, u, attempts), rejected)
    fields = {name: coeffs.pop(name) for name in pde.field_channels}
    return Block(
        source=f,
        solution=u,
        parameter=parameter,
        coefficients=coeffs,
        channels=pde.channel_values(coeffs),
        fields=fields,
        sparsity=sparsity,
        attempts=attempts,
    )


def _redraw(spec, pde, grid, gen, state: tuple, rejected: torch.Tensor) -> None:
    """Replace rejected samples in place, in rounds: round r draws min(2^r, ROUND_DRAWS / k)
    candidate sources for each of the k samples still rejected and keeps each sample's first
    accepted candidate. Candidates grow geometrically, so a sample next to a resonance costs a
    few large batched rounds instead of thousands of tiny ones, while one that is accepted at
    its second try costs one extra draw. A sample that has drawn the family's redraw budget
    (``redraw_budget``, default DEFAULT_REDRAW_BUDGET) without success is an
    UnsampleableError. The rounds depend on the random stream alone, never on the budget."""
    parameter, sparsity, f, coeffs, u, attempts = state
    budget = redraw_budget(pde)
    for round_ in itertools.count():
        idx = rejected.nonzero().squeeze(1)
        if not len(idx) or int(attempts[idx].min()) >= budget:
            break
        per = max(1, min(2 ** min(round_, 30), ROUND_DRAWS // len(idx)))
        each = idx.repeat_interleave(per)
        f2, c2, u2 = _solve_batch(spec, pde, grid, gen, parameter[each], sparsity[each])
        ok = pde.accept(u2).reshape(len(idx), per)
        hit = ok.any(dim=1)
        first = ok.to(torch.int8).argmax(dim=1)  # index of the first accepted candidate
        attempts[idx] += torch.where(hit, first + 1, per)
        take = idx[hit]
        pick = (hit.nonzero().squeeze(1) * per + first[hit]).long()
        f[take], u[take] = f2[pick], u2[pick]
        for name, value in c2.items():
            coeffs[name][take] = value[pick]
        rejected[take] = False
    if rejected.any():
        raise UnsampleableError(sorted(set(parameter[rejected].tolist())), budget)
