"""Generating one block of samples in memory (float64): sources, parameters, solutions.

A block is the unit of randomness and of writing: block b of a split holds samples
[b * block_size, (b + 1) * block_size) and draws from its own generator, so it can be produced
alone, in any order, and always comes out the same.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from pdefm.data.spec import GenerationSpec
from pdefm.pdes import Coefficients, Grid, PDEFamily

MAX_REDRAWS = 2000  # rounds of source redraws for rejected samples before giving up


class UnsampleableError(RuntimeError):
    """Some parameter values had no accepted source after MAX_REDRAWS redraws."""

    def __init__(self, values: list[float]):
        super().__init__(f"no accepted source for parameter values {values}")
        self.values = values


@dataclass
class Block:
    """One block of generated samples; fields are float64 tensors with leading size B."""

    source: torch.Tensor  # (B, n, n)
    solution: torch.Tensor  # (B, n, n)
    parameter: torch.Tensor  # (B,) the declared parameter
    coefficients: Coefficients  # name -> (B,)
    channels: torch.Tensor  # (B, C) constant coefficient channels
    sparsity: torch.Tensor  # (B,) inactive probability vf of each source
    attempts: torch.Tensor  # (B,) int64: sources drawn until accepted (1 = first)


def _solve_batch(
    spec: GenerationSpec,
    pde: PDEFamily,
    grid: Grid,
    gen: torch.Generator,
    parameter: torch.Tensor,
    sparsity: torch.Tensor,
) -> tuple[torch.Tensor, Coefficients, torch.Tensor]:
    """Draw sources for the given parameters and solve: returns f, coeffs, u."""
    f = spec.source.sample(gen, sparsity, grid, pde.remove_mean)
    f_hat = torch.fft.rfft2(f)
    coeffs = pde.sample_coefficients(gen, parameter, f_hat, grid)
    u_hat = pde.solve_spectral(f_hat, coeffs, grid)
    return f, coeffs, torch.fft.irfft2(u_hat, s=grid.shape)


def generate_block(spec: GenerationSpec, split: str, block: int) -> Block:
    """Generate block ``block`` of ``split`` (see the module docstring).

    Samples whose solution the family rejects keep their parameter and sparsity level and get
    a fresh source, so the declared parameter law is honoured exactly.
    """
    pde, grid = spec.pde(), spec.grid()
    gen = spec.block_generator(split, block)
    start, stop = spec.block_range(split, block)
    sparsity = spec.source.sparsity_of_index(torch.arange(start, stop))
    parameter = pde.sample_parameter(gen, stop - start, spec.low, spec.high)
    f, coeffs, u = _solve_batch(spec, pde, grid, gen, parameter, sparsity)
    attempts = torch.ones(stop - start, dtype=torch.int64)
    rejected = ~pde.accept(u)
    for _ in range(MAX_REDRAWS):
        if not rejected.any():
            break
        idx = rejected.nonzero().squeeze(1)
        f2, c2, u2 = _solve_batch(spec, pde, grid, gen, parameter[idx], sparsity[idx])
        f[idx], u[idx] = f2, u2
        for name, value in c2.items():
            coeffs[name][idx] = value
        attempts[idx] += 1
        rejected[idx] = ~pde.accept(u2)
    if rejected.any():
        raise UnsampleableError(sorted(set(parameter[rejected].tolist())))
    return Block(
        source=f,
        solution=u,
        parameter=parameter,
        coefficients=coeffs,
        channels=pde.channel_values(coeffs),
        sparsity=sparsity,
        attempts=attempts,
    )


def acceptance_rates(
    spec: GenerationSpec, per_level: int = 64, chunk: int = 16
) -> dict[float, float]:
    """Lowest share of accepted sources over the sparsity levels, per value of a discrete
    parameter (e.g. Helmholtz w); empty for continuous laws.

    Sources come from a probe stream disjoint from the dataset's streams, in chunks of
    ``chunk`` per sparsity level shared by every value. A value stops being probed once every
    level has an accepted source (one chunk for most values); it is declared unsampleable
    (rate 0) when some level has none in ``per_level`` sources: keeping it would silently skew
    that value's sources towards the sparse levels.
    """
    pde, grid = spec.pde(), spec.grid()
    support = getattr(pde, "support", None)  # excluded values are not probed
    if support is None:
        return {}
    gen = torch.Generator().manual_seed(spec.split_seed("acceptance-probe"))
    n_levels = len(spec.source.sparsity_levels)
    sparsity = spec.source.sparsity_of_index(torch.arange(chunk * n_levels))
    chunks: list[torch.Tensor] = []  # source spectra, drawn on first use, shared by all values

    def spectra(k: int) -> torch.Tensor:
        while len(chunks) <= k:
            f = spec.source.sample(gen, sparsity, grid, pde.remove_mean)
            chunks.append(torch.fft.rfft2(f))
        return chunks[k]

    rates = {}
    for value in support(spec.low, spec.high):
        accepted = torch.zeros(n_levels)
        tried = 0
        for k in range(max(1, per_level // chunk)):
            f_hat = spectra(k)
            parameter = torch.full_like(sparsity, float(value))
            coeffs = pde.sample_coefficients(gen, parameter, f_hat, grid)
            u = torch.fft.irfft2(pde.solve_spectral(f_hat, coeffs, grid), s=grid.shape)
            accepted += pde.accept(u).double().reshape(chunk, n_levels).sum(dim=0)
            tried += chunk
            if (accepted > 0).all():
                break
        rates[float(value)] = (accepted.min() / tried).item()
    return rates
