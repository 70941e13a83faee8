"""The Darcy solver (pdefm.pdes.darcy): operator, PCG solve, coefficient fields, errors.

The reference operator here is written from the equations with explicit loops over grid points
(numpy), independently of the module's vectorised rolls and pads.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from pdefm.errors import PdefmError
from pdefm.pdes import elliptic, random_fields

BOUNDARIES = ("periodic", "dirichlet")


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """Small grids: one thread is fastest and leaves the machine's other cores alone."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


# -- helpers ----------------------------------------------------------------------------------
def loop_operator(a: np.ndarray, u: np.ndarray, boundary: str) -> np.ndarray:
    """(A u)_ij = sum over the 4 neighbours of a_face (u_ij - u_nb) / h^2, by explicit loops.

    periodic: h = 1/n, neighbours wrap, a_face = 2 a_ij a_nb / (a_ij + a_nb).
    dirichlet: h = 1/(n+1); a neighbour outside 0..n-1 is a boundary point with u = 0 and the
    face takes a_ij. Vectorised over the batch axis only.
    """
    a, u = np.asarray(a, dtype=np.float64), np.asarray(u, dtype=np.float64)
    n = a.shape[-1]
    h = 1.0 / n if boundary == "periodic" else 1.0 / (n + 1)
    out = np.zeros_like(u)
    for i in range(n):
        for j in range(n):
            total = np.zeros(a.shape[0])
            for di, dj in ((1, 0), (-1, 0), (0, 1), (0, -1)):
                p, q = i + di, j + dj
                if boundary == "periodic":
                    p, q = p % n, q % n
                    a_nb, u_nb = a[:, p, q], u[:, p, q]
                    face = 2 * a[:, i, j] * a_nb / (a[:, i, j] + a_nb)
                elif 0 <= p < n and 0 <= q < n:
                    a_nb, u_nb = a[:, p, q], u[:, p, q]
                    face = 2 * a[:, i, j] * a_nb / (a[:, i, j] + a_nb)
                else:
                    face, u_nb = a[:, i, j], 0.0
                total += face * (u[:, i, j] - u_nb)
            out[:, i, j] = total / h**2
    return out


def loop_residual(a, u, f, boundary) -> np.ndarray:
    """||A u - f|| / ||f|| per sample with the loop operator."""
    r = loop_operator(a, u, boundary) - np.asarray(f)
    return np.linalg.norm(r.reshape(len(r), -1), axis=1) / np.linalg.norm(
        np.asarray(f).reshape(len(r), -1), axis=1
    )


def points(n: int, boundary: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Coordinates X, Y of shape (n, n) (x on axis 0) of the boundary's grid."""
    if boundary == "periodic":
        x = torch.arange(n, dtype=torch.float64) / n
    else:
        x = torch.arange(1, n + 1, dtype=torch.float64) / (n + 1)
    return torch.meshgrid(x, x, indexing="ij")


def random_source(gen: torch.Generator, batch: int, n: int, boundary: str) -> torch.Tensor:
    f = torch.randn((batch, n, n), generator=gen, dtype=torch.float64)
    return f - f.mean(dim=(-2, -1), keepdim=True) if boundary == "periodic" else f


def random_coefficient(gen: torch.Generator, batch: int, n: int) -> torch.Tensor:
    """Rough positive a in [0.1, 10]: log-uniform, independent per point."""
    return 10.0 ** (2 * torch.rand((batch, n, n), generator=gen, dtype=torch.float64) - 1)


def symbol_periodic(n: int) -> torch.Tensor:
    """(4 / h^2)(sin^2(pi m / n) + sin^2(pi l / n)) on the full (n, n) FFT grid, h = 1 / n."""
    s = torch.sin(math.pi * torch.arange(n, dtype=torch.float64) / n) ** 2
    return 4 * n**2 * (s[:, None] + s[None, :])


# -- dst1 -------------------------------------------------------------------------------------
@pytest.mark.parametrize("n", [1, 5, 8])
def test_dst1_matches_the_sine_sum_and_is_its_own_inverse_up_to_scale(n):
    gen = torch.Generator().manual_seed(0)
    x = torch.randn((3, n, 4), generator=gen, dtype=torch.float64)
    j = np.arange(1, n + 1)
    S = np.sin(np.pi * np.outer(j, j) / (n + 1))  # S_kj = sin(pi j k / (n + 1))
    expected = np.einsum("kj,bjc->bkc", S, x.numpy())
    y = elliptic.dst1(x, dim=1)
    np.testing.assert_allclose(y.numpy(), expected, rtol=1e-12, atol=1e-12)
    back = elliptic.dst1(y, dim=1) * 2 / (n + 1)
    torch.testing.assert_close(back, x, rtol=1e-13, atol=1e-13)


# -- the operator -----------------------------------------------------------------------------
@pytest.mark.parametrize("boundary", BOUNDARIES)
@pytest.mark.parametrize("n", [5, 12])
def test_apply_operator_matches_the_loop_operator(boundary, n):
    gen = torch.Generator().manual_seed(n)
    a = random_coefficient(gen, 3, n)
    u = torch.randn((3, n, n), generator=gen, dtype=torch.float64)
    got = elliptic.apply_operator(a, u, boundary)
    expected = loop_operator(a.numpy(), u.numpy(), boundary)
    scale = np.abs(expected).max()
    assert np.abs(got.numpy() - expected).max() <= 1e-12 * scale
    # unbatched in, unbatched out
    single = elliptic.apply_operator(a[1], u[1], boundary)
    assert single.shape == (n, n)
    torch.testing.assert_close(single, got[1], rtol=1e-14, atol=1e-14 * scale)


@pytest.mark.parametrize("boundary", BOUNDARIES)
def test_operator_is_symmetric_positive_definite(boundary):
    n = 16
    gen = torch.Generator().manual_seed(1)
    a = random_coefficient(gen, 4, n)
    u, v = (random_source(gen, 4, n, boundary) for _ in range(2))  # zero mean when periodic
    Au, Av = elliptic.apply_operator(a, u, boundary), elliptic.apply_operator(a, v, boundary)
    uAv, vAu = (u * Av).sum(dim=(1, 2)), (v * Au).sum(dim=(1, 2))
    torch.testing.assert_close(uAv, vAu, rtol=1e-12, atol=0.0)
    assert ((u * Au).sum(dim=(1, 2)) > 0).all()
    ones = torch.ones_like(u)
    A1 = elliptic.apply_operator(a, ones, boundary)
    if boundary == "periodic":  # constants are the null space
        assert A1.abs().max() < 1e-9
    else:  # only the cells next to the wall feel u = 0 there
        assert ((ones * A1).sum(dim=(1, 2)) > 0).all()


# -- the solver: exact cases ------------------------------------------------------------------
@pytest.mark.parametrize("boundary", BOUNDARIES)
def test_constant_coefficient_solve_is_the_exact_spectral_solution(boundary):
    n, c = 16, 2.5
    gen = torch.Generator().manual_seed(2)
    f = random_source(gen, 3, n, boundary)
    a = torch.full_like(f, c)
    if boundary == "periodic":
        sym = c * symbol_periodic(n)
        sym[0, 0] = 1.0
        u_hat = torch.fft.fft2(f) / sym
        u_hat[..., 0, 0] = 0.0
        exact = torch.fft.ifft2(u_hat).real
    else:
        k = torch.arange(1, n + 1, dtype=torch.float64)
        s = torch.sin(math.pi * k / (2 * (n + 1))) ** 2
        lam = c * 4 * (n + 1) ** 2 * (s[:, None] + s[None, :])
        f_hat = elliptic.dst1(elliptic.dst1(f, dim=1), dim=2)
        exact = elliptic.dst1(elliptic.dst1(f_hat / lam, dim=1), dim=2) * (2 / (n + 1)) ** 2
    # the exact solution really solves the discrete problem (loop operator)
    np.testing.assert_allclose(
        loop_operator(a.numpy(), exact.numpy(), boundary), f.numpy(), atol=1e-10
    )
    sol = elliptic.solve(a, f, boundary)
    assert (sol.iterations <= 2).all() and (sol.iterations >= 1).all()
    assert sol.converged.all()
    assert (sol.u - exact).abs().max() <= 1e-10 * exact.abs().max()


def manufactured(boundary: str, n: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(a, f, u) on the grid for smooth a and u with f = -div(a grad u) computed analytically.

    a = 1 + 0.5 sin(2 pi x) cos(2 pi y) (periodic, so usable for both boundaries);
    dirichlet: u = sin(pi x) sin(pi y); periodic: u = sin(2 pi x) sin(4 pi y) + cos(2 pi (x + y))
    (zero mean). f = -(a_x u_x + a_y u_y + a Laplacian u).
    """
    X, Y = points(n, boundary)
    p = math.pi
    a = 1 + 0.5 * torch.sin(2 * p * X) * torch.cos(2 * p * Y)
    a_x = p * torch.cos(2 * p * X) * torch.cos(2 * p * Y)
    a_y = -p * torch.sin(2 * p * X) * torch.sin(2 * p * Y)
    if boundary == "dirichlet":
        u = torch.sin(p * X) * torch.sin(p * Y)
        u_x = p * torch.cos(p * X) * torch.sin(p * Y)
        u_y = p * torch.sin(p * X) * torch.cos(p * Y)
        lap = -2 * p**2 * u
    else:
        u1, u2 = torch.sin(2 * p * X) * torch.sin(4 * p * Y), torch.cos(2 * p * (X + Y))
        u = u1 + u2
        s2 = torch.sin(2 * p * (X + Y))
        u_x = 2 * p * torch.cos(2 * p * X) * torch.sin(4 * p * Y) - 2 * p * s2
        u_y = 4 * p * torch.sin(2 * p * X) * torch.cos(4 * p * Y) - 2 * p * s2
        lap = -20 * p**2 * u1 - 8 * p**2 * u2
    f = -(a_x * u_x + a_y * u_y + a * lap)
    return a, f, u


@pytest.mark.parametrize("boundary", BOUNDARIES)
def test_manufactured_solution_converges_at_second_order(boundary):
    errors = []
    for n in (16, 32):
        a, f, u = manufactured(boundary, n)
        if boundary == "periodic":
            f = f - f.mean()  # zero up to rounding already; the solver admits only that
        sol = elliptic.solve(a, f, boundary)
        assert bool(sol.converged)
        errors.append((sol.u - u).abs().max().item())
    assert errors[1] < 0.05  # the discrete solution is close at all
    assert errors[0] / errors[1] > 3.0, errors


# -- the solver: variable coefficients --------------------------------------------------------
@pytest.mark.parametrize("boundary", BOUNDARIES)
@pytest.mark.parametrize("kind", ["smooth", "threshold"])
@pytest.mark.parametrize("contrast", [10.0, 100.0])
def test_reported_residual_is_below_tol_and_matches_an_independent_one(boundary, kind, contrast):
    n, tol = 24, 1e-10
    gen = torch.Generator().manual_seed(3)
    a = random_fields.coefficient_field(gen, 3, n, contrast, kind, boundary=boundary)
    f = random_source(gen, 3, n, boundary)
    sol = elliptic.solve(a, f, boundary, tol=tol)
    assert sol.u.shape == (3, n, n) and sol.u.dtype == torch.float64
    assert sol.iterations.dtype == torch.int64 and sol.converged.dtype == torch.bool
    assert sol.converged.all()
    assert (sol.residual <= tol).all() and (sol.residual > 0).all()
    independent = loop_residual(a.numpy(), sol.u.numpy(), f.numpy(), boundary)
    np.testing.assert_allclose(sol.residual.numpy(), independent, rtol=1e-6, atol=1e-13)
    if boundary == "periodic":
        assert sol.u.mean(dim=(1, 2)).abs().max() < 1e-14 * sol.u.abs().max()


def test_batched_equals_one_at_a_time():
    n = 16
    gen = torch.Generator().manual_seed(4)
    for boundary in BOUNDARIES:
        a = random_fields.coefficient_field(gen, 3, n, 50.0, "threshold", boundary=boundary)
        f = random_source(gen, 3, n, boundary)
        batched = elliptic.solve(a, f, boundary)
        for b in range(3):
            one = elliptic.solve(a[b], f[b], boundary)
            assert one.u.shape == (n, n) and one.iterations.shape == ()
            assert int(one.iterations) == int(batched.iterations[b])
            torch.testing.assert_close(one.u, batched.u[b], rtol=1e-12, atol=1e-14)


def test_unconverged_sample_is_reported_not_dropped():
    n = 16
    gen = torch.Generator().manual_seed(5)
    hard = random_fields.coefficient_field(gen, 1, n, 100.0, "threshold")
    a = torch.cat([torch.full((1, n, n), 3.0, dtype=torch.float64), hard])
    f = random_source(gen, 2, n, "periodic")
    sol = elliptic.solve(a, f, "periodic", max_iter=2)
    assert sol.u.shape == (2, n, n)
    assert sol.converged.tolist() == [True, False]
    assert sol.iterations.tolist() == [1, 2]
    assert sol.residual[0] <= 1e-10 < sol.residual[1]
    assert torch.isfinite(sol.u).all()
    # the constant sample's answer is unaffected by its batch-mate
    torch.testing.assert_close(sol.u[0], elliptic.solve(a[0], f[0], "periodic").u)


def test_zero_source_gives_zero_solution():
    a = random_fields.coefficient_field(torch.Generator().manual_seed(6), 2, 8, 10.0)
    sol = elliptic.solve(a, torch.zeros(2, 8, 8, dtype=torch.float64), "dirichlet")
    assert (sol.u == 0).all() and sol.converged.all() and (sol.iterations == 0).all()


# -- coefficient fields -----------------------------------------------------------------------
@pytest.mark.parametrize("boundary", BOUNDARIES)
def test_coefficient_field_values_and_per_sample_contrast(boundary):
    n = 32
    contrast = torch.tensor([2.0, 10.0, 100.0, 1000.0], dtype=torch.float64)
    gen = torch.Generator().manual_seed(7)
    a = random_fields.coefficient_field(gen, 4, n, contrast, "smooth", boundary=boundary)
    assert a.shape == (4, n, n) and a.dtype == torch.float64
    c = contrast.reshape(-1, 1, 1)
    assert (a >= 1).all() and (a <= c).all()
    ratio = a.amax(dim=(1, 2)) / a.amin(dim=(1, 2))
    # log(max/min) / log(contrast) = Phi(max z) - Phi(min z): close to 1 over 1024 points
    assert (ratio.log() / contrast.log() > 0.9).all(), ratio

    t = random_fields.coefficient_field(gen, 4, n, contrast, "threshold", boundary=boundary)
    both = torch.zeros(4, dtype=torch.bool)
    for b in range(4):
        values = set(t[b].unique().tolist())
        assert values <= {1.0, contrast[b].item()}
        both[b] = len(values) == 2
    assert both.any()
    tratio = t.amax(dim=(1, 2)) / t.amin(dim=(1, 2))
    assert (tratio[both] == contrast[both]).all()


def test_coefficient_field_is_deterministic_in_the_generator():
    def draw(seed, kind="smooth"):
        return random_fields.coefficient_field(
            torch.Generator().manual_seed(seed), 2, 16, 10.0, kind
        )

    assert torch.equal(draw(0), draw(0))
    assert torch.equal(draw(0, "threshold"), draw(0, "threshold"))
    assert not torch.equal(draw(0), draw(1))
    assert (draw(0) - draw(1)).abs().max() > 0.5


def test_threshold_splits_the_same_gaussian_field_at_its_median():
    # same seed, same z: a_smooth = c ** Phi(z) > sqrt(c) exactly where z > 0
    smooth = random_fields.coefficient_field(torch.Generator().manual_seed(11), 8, 32, 100.0)
    two_phase = random_fields.coefficient_field(
        torch.Generator().manual_seed(11), 8, 32, 100.0, "threshold"
    )
    assert torch.equal(two_phase == 100.0, smooth > 10.0)
    assert 0.3 < (two_phase == 100.0).double().mean() < 0.7  # z is symmetric about 0


def test_dirichlet_field_is_the_periodic_field_at_the_interior_points():
    periodic = random_fields.coefficient_field(torch.Generator().manual_seed(8), 2, 17, 10.0)
    dirichlet = random_fields.coefficient_field(
        torch.Generator().manual_seed(8), 2, 16, 10.0, boundary="dirichlet"
    )
    torch.testing.assert_close(dirichlet, periodic[:, 1:, 1:], rtol=0, atol=0)


def test_contrast_one_is_constant_and_field_is_smooth_at_the_length_scale():
    gen = torch.Generator().manual_seed(9)
    assert (random_fields.coefficient_field(gen, 2, 16, 1.0) == 1.0).all()
    z = random_fields.gaussian_field(gen, 64, 32, 0.2)
    assert abs(z.var().item() - 1) < 0.2  # unit pointwise variance
    # neighbours are strongly correlated at a length scale of 0.2 = 6.4 cells
    assert (z * torch.roll(z, 1, dims=1)).mean() / z.var() > 0.8


# -- errors -----------------------------------------------------------------------------------
def _ok(n=8, batch=2):
    a = torch.ones(batch, n, n, dtype=torch.float64)
    f = random_source(torch.Generator().manual_seed(10), batch, n, "periodic")
    return a, f


def test_error_non_positive_coefficient():
    a, f = _ok()
    a[1, 2, 3] = 0.0
    with pytest.raises(PdefmError, match="a must be positive"):
        elliptic.solve(a, f, "periodic")
    a[1, 2, 3] = -1.0
    with pytest.raises(PdefmError, match="a must be positive"):
        elliptic.apply_operator(a, f, "dirichlet")


def test_error_non_finite_coefficient():
    a, f = _ok()
    a[0, 0, 0] = float("nan")
    with pytest.raises(PdefmError, match="NaN"):
        elliptic.solve(a, f, "dirichlet")
    a[0, 0, 0] = float("inf")
    with pytest.raises(PdefmError, match="infinite"):
        elliptic.solve(a, f, "dirichlet")


def test_error_shape_mismatch():
    a, f = _ok()
    with pytest.raises(PdefmError, match="shape mismatch"):
        elliptic.solve(a, f[:, :-1, :-1], "dirichlet")
    with pytest.raises(PdefmError, match="shape mismatch"):
        elliptic.solve(a[0], f, "dirichlet")
    with pytest.raises(PdefmError, match="square grid"):
        elliptic.solve(a[:, :, :-1], f[:, :, :-1], "dirichlet")


def test_error_unknown_boundary():
    a, f = _ok()
    with pytest.raises(PdefmError, match="unknown boundary 'neumann'"):
        elliptic.solve(a, f, "neumann")
    with pytest.raises(PdefmError, match="unknown boundary"):
        elliptic.apply_operator(a, f, "Periodic")
    with pytest.raises(PdefmError, match="unknown boundary"):
        random_fields.coefficient_field(torch.Generator(), 1, 8, 10.0, boundary="robin")


def test_error_contrast_below_one():
    gen = torch.Generator().manual_seed(0)
    with pytest.raises(PdefmError, match="contrast must be >= 1"):
        random_fields.coefficient_field(gen, 2, 8, 0.5)
    with pytest.raises(PdefmError, match="contrast must be >= 1"):
        random_fields.coefficient_field(gen, 2, 8, torch.tensor([2.0, 0.9]), "threshold")
    with pytest.raises(PdefmError, match="contrast has shape"):
        random_fields.coefficient_field(gen, 2, 8, torch.tensor([2.0, 3.0, 4.0]))
    with pytest.raises(PdefmError, match="unknown kind"):
        random_fields.coefficient_field(gen, 2, 8, 10.0, kind="gaussian")


def test_error_periodic_source_with_non_zero_mean():
    a, f = _ok()
    f[1] += 0.1
    with pytest.raises(PdefmError, match="zero mean.*sample 1"):
        elliptic.solve(a, f, "periodic")
    # the same f is fine with Dirichlet conditions, and rounding-level means are admitted
    assert elliptic.solve(a, f, "dirichlet").converged.all()
    f[1] -= f[1].mean() - 1e-12
    assert elliptic.solve(a, f, "periodic").converged.all()
