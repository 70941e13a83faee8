"""How often a family with a discrete parameter law accepts a source, per value and sparsity
level, measured before generation (Helmholtz: samples with max |u| > max_abs_u redraw their
source, so a w next to a resonance may need many draws per sample).

Per sparsity level the probe draws sources in growing chunks (64, 128, 256, 512) from a
stream disjoint from the dataset's, shared by every value still being probed. A value stops
being probed at a level once ``STOP_AFTER`` sources were accepted there, or after
``MAX_DRAWS`` draws: a level with no accepted source in 32,768 draws has an acceptance rate
below 1e-4 with 96% confidence (rates of 1e-4 show at least one acceptance in 96% of probes).
Once a level shows that the family's redraw budget cannot carry a value, that value is not
probed at the remaining levels (the worst level decides).

Cheap by construction: sources are rendered and transformed once per chunk for all values;
for each value the RMS of u follows from the spectrum (Parseval) and is a lower bound of
max |u|, so most rejected sources need no inverse FFT; only the rest are solved in full. The
probe runs on a grid of at most ``PROBE_GRID`` (the sources are continuous functions, so max |u|
on a finer grid differs by well under 1%), which keeps it at about a second per near-resonant
value whatever the dataset's resolution. Imports torch.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass, field

import torch

from pdefm.data.blocks import redraw_budget
from pdefm.data.spec import GenerationSpec
from pdefm.pdes import Grid, PDEFamily

PROBE_GRID = 64
MAX_DRAWS = 32768  # per (value, level): detects acceptance rates down to 1e-4
STOP_AFTER = 3  # accepted sources per (value, level) that end its probe
FIRST_CHUNK, MAX_CHUNK = 64, 512
REFUSE_ODDS = 1e-4  # a budget a sample exhausts with higher odds (optimistically) is refused
SUGGEST_ODDS = 1e-6  # the budget suggested instead: exhausted with these odds at the measured rate


@dataclass
class ValueProbe:
    """Accepted / drawn sources of one parameter value, per sparsity level."""

    levels: dict[float, list[int]] = field(default_factory=dict)  # level -> [accepted, drawn]

    def rate(self, level: float) -> float:
        accepted, drawn = self.levels[level]
        return accepted / drawn if drawn else 0.0

    @property
    def worst_level(self) -> float:
        """The sparsity level with the lowest measured acceptance."""
        return min(self.levels, key=self.rate)

    @property
    def min_rate(self) -> float:
        return self.rate(self.worst_level) if self.levels else 1.0

    def sampleable(self, budget: int) -> bool:
        """Whether ``budget`` draws per sample suffice: every level had an accepted source, and
        even at the optimistic reading (accepted + 1) / drawn of the probe's counts a sample
        would exhaust the budget with odds above REFUSE_ODDS, (1 - p)^budget > 1e-4. Optimistic,
        because the probe stops after a few acceptances and its counts are noisy; generation
        enforces the budget exactly anyway (and a sample that exhausts it is an error)."""
        if any(accepted == 0 for accepted, _ in self.levels.values()):
            return False
        optimistic = min((a + 1) / d for a, d in self.levels.values())
        return optimistic * budget >= -math.log(REFUSE_ODDS)

    def to_dict(self) -> dict:
        return {
            "min_rate": self.min_rate,
            "levels": {
                f"{lv:g}": {"accepted": a, "drawn": d} for lv, (a, d) in self.levels.items()
            },
        }


def needed_budget(rate: float) -> int:
    """A redraw budget (rounded up to 1, 2 or 5 x 10^k) that a value whose worst level accepts
    ``rate`` of its sources exhausts with odds below SUGGEST_ODDS per sample; it also passes
    ``sampleable`` for the same probe."""
    need = -math.log(SUGGEST_ODDS) / max(rate, 1e-12)
    scale = 10 ** math.floor(math.log10(need))
    return int(next(m * scale for m in (1, 2, 5, 10) if m * scale >= need))


def probe_resolution(spec: GenerationSpec) -> int:
    """The probe's grid: the dataset's if coarser than PROBE_GRID, else PROBE_GRID (or the
    finest grid the source width needs, if that is finer)."""
    n = spec.resolution
    return n if n <= PROBE_GRID else max(PROBE_GRID, spec.source.min_resolution())


def probe_acceptance(spec: GenerationSpec) -> dict[float, ValueProbe]:
    """Measured acceptance per value of a discrete parameter law (empty for continuous laws
    and for families that accept every sample); see the module docstring."""
    pde = spec.pde()
    support = getattr(pde, "support", None)  # excluded values are not probed
    if support is None or getattr(pde, "max_abs_u", None) is None:
        return {}
    budget = redraw_budget(pde)
    screen = _Screen(spec, pde, Grid(probe_resolution(spec)))
    probes = {float(v): ValueProbe() for v in support(spec.low, spec.high)}
    factors = {v: screen.inverse_symbol_sq(v) for v in probes}
    dead: set[float] = set()
    for index, level in enumerate(spec.source.sparsity_levels):
        gen = torch.Generator().manual_seed(_seed(spec, index))
        todo = [v for v in probes if v not in dead]
        drawn, chunk = 0, FIRST_CHUNK
        while todo and drawn < MAX_DRAWS:
            size = min(chunk, MAX_DRAWS - drawn)
            weights = spec.source.sample_weights(
                gen, torch.full((size,), float(level), dtype=torch.float64)
            )
            screen.load(weights)
            for value in todo:
                counts = probes[value].levels.setdefault(level, [0, 0])
                counts[0] += screen.accepted(value, factors[value])
                counts[1] += size
            drawn, chunk = drawn + size, min(2 * chunk, MAX_CHUNK)
            todo = [v for v in todo if probes[v].levels[level][0] < STOP_AFTER]
        # A value the budget cannot carry at this level is unsampleable whatever the other
        # levels show (the worst level decides), so it is not probed further.
        dead.update(v for v in probes if v not in dead and not probes[v].sampleable(budget))
    return probes


def _seed(spec: GenerationSpec, level_index: int) -> int:
    text = f"{spec.split_seed('acceptance-probe')}:{level_index}"
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "little") >> 1


class _Screen:
    """Accept/reject a chunk of sources for one value at a time, cheaply.

    A source is f = F / max F with F = G^T W G (lattice weights W, 1-D profiles G), so the
    spectrum of F at the low modes |m| <= SCREEN_MODES is two small matrix products with the
    1-D DFT of G, no 2-D FFT. Those modes give a lower bound of RMS(u) <= max |u|, which
    rejects most near-resonant sources; the rest are rendered and solved exactly as
    generation does."""

    SCREEN_MODES = 12

    def __init__(self, spec: GenerationSpec, pde: PDEFamily, grid: Grid):
        self.spec, self.pde, self.grid = spec, pde, grid
        self.profiles = spec.source.profiles(grid)  # (L, n)
        m = min(self.SCREEN_MODES, grid.n // 2 - 1)
        self.rows = torch.cat([torch.arange(m + 1), torch.arange(grid.n - m, grid.n)])
        self.cols = torch.arange(m + 1)
        dft = torch.fft.fft(self.profiles.to(torch.complex128), dim=1)
        self.left = dft[:, self.rows].T.contiguous()  # (K1, L)
        self.right = dft[:, self.cols].contiguous()  # (L, K2)
        self.col_weights = grid.parseval_weights[:, : m + 1]  # no Nyquist column among them

    def inverse_symbol_sq(self, value: float) -> torch.Tensor:
        """1 / |sigma|^2 of one value at the screened modes, shape (K1, K2); 0 at a mode the
        solve zeroes (the mean, for families without a zeroth-order term). Coefficients of
        discrete-law families depend on the parameter alone, so one value has one symbol."""
        coeffs = self._coefficients(value, 1, None)
        sigma = self.pde.symbol(coeffs, self.grid)[0][self.rows][:, self.cols]
        power = sigma.real**2 + sigma.imag**2 if sigma.is_complex() else sigma**2
        inverse = 1.0 / power
        if self.pde.remove_mean:
            inverse[0, 0] = 0.0
        return inverse * self.col_weights

    def load(self, weights: torch.Tensor) -> None:
        """Take a chunk of lattice weights (B, L, L): low spectrum and maximum of F."""
        self.weights = weights
        raw = self.profiles.T @ weights @ self.profiles
        self.scale = raw.amax(dim=(-2, -1))
        low = self.left @ weights.to(torch.complex128) @ self.right
        self.power = (low.real**2 + low.imag**2).flatten(1)

    def accepted(self, value: float, inverse_sq: torch.Tensor) -> int:
        """How many sources of the loaded chunk the family accepts for ``value``."""
        n4 = float(self.grid.n) ** 4
        rms_low = (self.power @ inverse_sq.flatten() / n4).sqrt() / self.scale
        maybe = ~(rms_low > self.pde.max_abs_u * (1 + 1e-9))  # margin: rounding; NaN solves
        if not maybe.any():
            return 0
        f = self.spec.source.render(self.weights[maybe], self.grid, self.pde.remove_mean)
        f_hat = torch.fft.rfft2(f)
        coeffs = self._coefficients(value, len(f), f_hat)
        u = torch.fft.irfft2(self.pde.solve_spectral(f_hat, coeffs, self.grid), s=self.grid.shape)
        return int(self.pde.accept(u).sum())

    def _coefficients(self, value: float, count: int, f_hat):
        parameter = torch.full((count,), value, dtype=torch.float64)
        return self.pde.sample_coefficients(torch.Generator(), parameter, f_hat, self.grid)
