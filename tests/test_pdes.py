"""Physics: solvers against closed-form solutions, residuals, parameter laws, sources."""

from __future__ import annotations

import math

import pytest
import torch

from pdefm import catalogue
from pdefm.pdes import AdvectionDiffusion, GaussianLatticeSource, Grid, Helmholtz, Poisson
from pdefm.pdes.base import rotated_tensor
from pdefm.pdes.darcy import Darcy

N = 32


def fourier_mode(grid: Grid, a: int, b: int) -> tuple[torch.Tensor, torch.Tensor]:
    """theta = 2 pi (a x + b y) on the grid, and f = cos(theta), both (1, n, n)."""
    x = grid.coords.reshape(-1, 1)
    y = grid.coords.reshape(1, -1)
    theta = 2 * math.pi * (a * x + b * y)
    return theta[None], torch.cos(theta)[None]


def spectral_derivative(u: torch.Tensor, axis: int, grid: Grid) -> torch.Tensor:
    """du/dx_axis by a full complex FFT, independent of the families' symbol code."""
    k = grid.kx_odd.reshape(-1, 1) if axis == 0 else grid.kx_odd.reshape(1, -1)
    return torch.fft.ifft2(1j * k * torch.fft.fft2(u)).real


def operator_by_derivatives(pde, u, coeffs, grid) -> torch.Tensor:
    """L u assembled from first derivatives: the residual check that does not trust sigma(k).
    Darcy's operator is the 5-point finite-volume one: there, the test's own loop over the
    stencil (written from the equations, not from the solver's code)."""
    if isinstance(pde, Darcy):
        from test_darcy_solver import loop_operator

        a = (pde.c * coeffs["diffusion_xx"]).numpy()
        return torch.from_numpy(loop_operator(a, u.numpy(), pde.boundary))
    d = lambda v, ax: spectral_derivative(v, ax, grid)  # noqa: E731
    if isinstance(pde, Helmholtz):
        lap = d(d(u, 0), 0) + d(d(u, 1), 1)
        return -pde.c * lap - coeffs["w"].reshape(-1, 1, 1) * u
    b = (-1, 1, 1)
    k11, k22, k12 = (coeffs[k].reshape(b) for k in ("k11", "k22", "k12"))
    ux, uy = d(u, 0), d(u, 1)
    div = d(k11 * ux + k12 * uy, 0) + d(k12 * ux + k22 * uy, 1)
    if isinstance(pde, Poisson):
        return -pde.c * div
    l = coeffs["l"].reshape(b)
    adv = coeffs["vx"].reshape(b) * ux + coeffs["vy"].reshape(b) * uy
    return -(1 - l) * pde.c * div + l * adv


def poisson_coeffs(e: float, theta: float) -> dict:
    e_t, th = torch.tensor([e], dtype=torch.float64), torch.tensor([theta], dtype=torch.float64)
    k11, k22, k12 = rotated_tensor(e_t, th)
    return {"e": e_t, "theta": th, "k11": k11, "k22": k22, "k12": k12}


@pytest.mark.parametrize("a,b", [(1, 0), (2, 3), (-4, 1)])
def test_poisson_single_mode_closed_form(a, b):
    grid, pde = Grid(N), Poisson()
    coeffs = poisson_coeffs(3.0, 0.7)
    _, f = fourier_mode(grid, a, b)
    kx, ky = 2 * math.pi * a, 2 * math.pi * b
    q = coeffs["k11"] * kx**2 + 2 * coeffs["k12"] * kx * ky + coeffs["k22"] * ky**2
    expected = f / (pde.c * q)
    torch.testing.assert_close(pde.solve(f, coeffs, grid), expected, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("a,b,l", [(1, 0, 0.3), (2, -3, 0.8), (0, 5, 0.05)])
def test_advection_diffusion_single_mode_closed_form(a, b, l):
    grid, pde = Grid(N), AdvectionDiffusion()
    coeffs = poisson_coeffs(2.0, 1.1)
    phi = torch.tensor([0.4], dtype=torch.float64)
    coeffs.update(vx=torch.cos(phi), vy=torch.sin(phi), l=torch.tensor([l], dtype=torch.float64))
    theta, f = fourier_mode(grid, a, b)
    kx, ky = 2 * math.pi * a, 2 * math.pi * b
    q = coeffs["k11"] * kx**2 + 2 * coeffs["k12"] * kx * ky + coeffs["k22"] * ky**2
    diff, adv = (1 - l) * pde.c * q, l * (coeffs["vx"] * kx + coeffs["vy"] * ky)
    # u = Re(e^{i theta} / (D + i A)) = (D cos theta + A sin theta) / (D^2 + A^2)
    expected = (diff * torch.cos(theta) + adv * torch.sin(theta)) / (diff**2 + adv**2)
    torch.testing.assert_close(pde.solve(f, coeffs, grid), expected, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("w", [1, 3, 7])
def test_helmholtz_single_mode_closed_form(w):
    grid, pde = Grid(N), Helmholtz()
    coeffs = {
        "w": torch.tensor([float(w)], dtype=torch.float64),
        "c": torch.tensor([0.01], dtype=torch.float64),
    }
    _, f = fourier_mode(grid, 2, 1)
    expected = f / (pde.c * (2 * math.pi) ** 2 * 5 - w)
    torch.testing.assert_close(pde.solve(f, coeffs, grid), expected, rtol=1e-12, atol=1e-12)
    # a constant source: u = -f / w (Helmholtz keeps the mean)
    const = torch.ones(1, N, N, dtype=torch.float64)
    torch.testing.assert_close(pde.solve(const, coeffs, grid), -const / w)


def test_rotated_tensor_has_eigenvalues_one_and_e():
    e = torch.tensor([1.5, 4.0, 9.0], dtype=torch.float64)
    theta = torch.tensor([0.1, 2.0, 5.5], dtype=torch.float64)
    k11, k22, k12 = rotated_tensor(e, theta)
    mats = torch.stack([torch.stack([k11, k12], -1), torch.stack([k12, k22], -1)], -2)
    eig = torch.linalg.eigvalsh(mats)
    torch.testing.assert_close(eig, torch.stack([torch.ones_like(e), e], -1))


def test_sources_are_max_normalised_balanced_and_mean_free():
    grid, law = Grid(64), GaussianLatticeSource()
    gen = torch.Generator().manual_seed(0)
    vf = law.sparsity_of_index(torch.arange(400))
    assert torch.bincount((vf * 5).round().long()).tolist() == [0, 100, 100, 100, 100]
    weights = law.sample_weights(gen, vf)
    active = (weights > 0).double().flatten(1).mean(1)
    for level in law.sparsity_levels:  # share of active centres is 1 - vf
        assert abs(active[vf == level].mean().item() - (1 - level)) < 0.02
    assert weights[weights > 0].min() >= 1e-3 and weights.max() <= 1.0
    f = law.render(weights, grid, remove_mean=False)
    torch.testing.assert_close(f.amax(dim=(-2, -1)), torch.ones(400, dtype=torch.float64))
    g = law.render(weights, grid, remove_mean=True)
    assert g.mean(dim=(-2, -1)).abs().max() < 1e-14


def test_separable_render_equals_sum_of_gaussians():
    grid, law = Grid(64), GaussianLatticeSource()
    weights = law.sample_weights(torch.Generator().manual_seed(1), torch.tensor([0.6]))
    x = grid.coords.reshape(-1, 1)
    y = grid.coords.reshape(1, -1)
    c = law.centres()
    wrap = lambda d: torch.remainder(d + 0.5, 1.0) - 0.5  # noqa: E731
    slow = torch.zeros(64, 64, dtype=torch.float64)
    for i in range(12):
        for j in range(12):
            r2 = wrap(x - c[i]) ** 2 + wrap(y - c[j]) ** 2
            slow += weights[0, i, j] * torch.exp(-r2 / (2 * law.sigma**2))
    torch.testing.assert_close(law.render(weights, grid, False)[0], slow / slow.max())


@pytest.mark.parametrize("family", catalogue.family_names())
def test_generated_samples_satisfy_the_pde(family):
    from conftest import small_spec
    from pdefm.data.blocks import generate_block

    spec = small_spec(family)
    block = generate_block(spec, "train", 0)
    pde, grid = spec.pde(), spec.grid()
    coeffs = {**block.coefficients, **block.fields}  # darcy's coefficient field by channel
    spectral = pde.relative_residual(block.solution, block.source, coeffs, grid)
    assert spectral.max() < 1e-8
    direct = operator_by_derivatives(pde, block.solution, coeffs, grid) - block.source
    rel = direct.flatten(1).norm(dim=1) / block.source.flatten(1).norm(dim=1)
    assert rel.max() < 1e-8, f"{family}: residual {rel.max():.2e}"


@pytest.mark.parametrize("low,high", [(0.2, 1.0), (1.0, 2.0), (5.0, 10.0)])
def test_advection_diffusion_ratio_is_met_exactly(low, high):
    from conftest import small_spec
    from pdefm.data.blocks import generate_block

    spec = small_spec("advection_diffusion", range=(low, high))
    block = generate_block(spec, "train", 0)
    pde, grid, c = spec.pde(), spec.grid(), block.coefficients
    # Psi measured in real space from the solution, not from the solver's own sums
    u = block.solution
    ux, uy = spectral_derivative(u, 0, grid), spectral_derivative(u, 1, grid)
    b = (-1, 1, 1)
    adv = c["l"].reshape(b) * (c["vx"].reshape(b) * ux + c["vy"].reshape(b) * uy)
    diff = operator_by_derivatives(Poisson(c=pde.c), u, c, grid) * (1 - c["l"].reshape(b))
    psi = adv.flatten(1).norm(dim=1) / diff.flatten(1).norm(dim=1)
    torch.testing.assert_close(psi, block.parameter, rtol=1e-9, atol=0)
    u_hat = torch.fft.rfft2(u)  # the solver's own Parseval sums agree
    torch.testing.assert_close(pde.ratio(u_hat, c, grid), block.parameter, rtol=1e-9, atol=0)
    assert ((psi >= low) & (psi <= high)).all()
    assert ((c["l"] > 0) & (c["l"] < 1)).all()


def test_helmholtz_keeps_w_and_redraws_rejected_sources():
    from conftest import small_spec
    from pdefm.data.blocks import generate_block

    spec = small_spec("helmholtz", range=(3, 5), block_size=64)  # w = 4 is half-rejected
    block = generate_block(spec, "train", 0)
    assert block.solution.abs().amax(dim=(-2, -1)).max() <= 2.0
    assert set(block.parameter.tolist()) == {3.0, 4.0, 5.0}
    redrawn = block.attempts > 1
    assert redrawn.any() and (block.parameter[redrawn] == 4.0).all()
