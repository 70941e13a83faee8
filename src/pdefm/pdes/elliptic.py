"""Variable-coefficient elliptic solves: -div(a(x) grad u) = f on the unit square, a(x) > 0 a
coefficient field (Darcy flow, steady heat conduction in a composite).

Unlike the other families the coefficient varies in space, so the operator is not diagonal in
Fourier space. It is discretised by 5-point finite volumes and solved by batched preconditioned
conjugate gradients (PCG), preconditioned by the exact spectral inverse of a constant-coefficient
operator. Everything is float64 and batched: fields have shape (B, n, n), x is array axis 0 and
y axis 1.

Grids (``boundary``):

* ``"periodic"``: the periodic unit square [0, 1)^2, points x_i = i / n, h = 1 / n, indices wrap
  (the same points as :class:`pdefm.pdes.grid.Grid`). Constants are the null space of A, so f
  must have zero mean and the zero-mean solution is returned.
* ``"dirichlet"``: u = 0 on the boundary of [0, 1]^2. The n x n unknowns are the interior points
  x_i = (i + 1) / (n + 1), i = 0 .. n - 1, h = 1 / (n + 1); the boundary points x = 0 and x = 1
  hold u = 0 and are not stored.

Discretisation. With a_{i+1/2,j} the coefficient on the face between cells (i, j) and (i+1, j),

    (A u)_ij = [ a_{i+1/2,j} (u_ij - u_{i+1,j}) + a_{i-1/2,j} (u_ij - u_{i-1,j})
               + a_{i,j+1/2} (u_ij - u_{i,j+1}) + a_{i,j-1/2} (u_ij - u_{i,j-1}) ] / h^2,

i.e. A u = -div_h(a_face grad_h u). Face coefficients are harmonic means of the two cell values,
a_{i+1/2,j} = 2 a_ij a_{i+1,j} / (a_ij + a_{i+1,j}): the flux through a face between two
materials in series, which keeps the scheme accurate where a jumps. A face between an interior
cell and the Dirichlet boundary takes the interior cell's a (no coefficient lives on the
boundary). A is symmetric positive definite (on zero-mean fields when periodic).

Random coefficient fields are in :mod:`pdefm.pdes.random_fields`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from pdefm.errors import PdefmError

BOUNDARIES = ("periodic", "dirichlet")
MEAN_TOLERANCE = 1e-6  # periodic f: |mean f| / rms(f) above this is refused (see _check_source)


@dataclass(frozen=True)
class DarcySolution:
    """What :func:`solve` returns. Shapes are for batched input; unbatched input (n, n) gives
    u of shape (n, n) and 0-d tensors for the rest.

    u          (B, n, n) float64  the PCG solution (zero mean when periodic)
    iterations (B,) int64         PCG iterations each sample took (max_iter if not converged)
    residual   (B,) float64       ||A u - f|| / ||f||, recomputed from u at the end (periodic:
                                  f less its admitted rounding-level mean, see solve)
    converged  (B,) bool          residual <= tol
    """

    u: torch.Tensor
    iterations: torch.Tensor
    residual: torch.Tensor
    converged: torch.Tensor


# -- checks ------------------------------------------------------------------------------------
def check_boundary(boundary: str) -> None:
    if boundary not in BOUNDARIES:
        raise PdefmError(
            f"unknown boundary {boundary!r}; use one of {', '.join(map(repr, BOUNDARIES))}"
        )


def _as_field(x: torch.Tensor, name: str) -> tuple[torch.Tensor, bool]:
    """``x`` as float64 of shape (B, n, n), and whether it came unbatched as (n, n)."""
    x = torch.as_tensor(x)
    if x.dim() not in (2, 3) or x.shape[-1] != x.shape[-2] or x.shape[-1] < 2:
        raise PdefmError(
            f"{name} has shape {tuple(x.shape)}; pass a square grid of shape (B, n, n) or (n, n) "
            "with n >= 2"
        )
    if x.is_complex():
        raise PdefmError(f"{name} is complex; pass a real tensor")
    unbatched = x.dim() == 2
    x = x.to(torch.float64)
    return (x.unsqueeze(0) if unbatched else x), unbatched


def _check_coefficient(a: torch.Tensor) -> None:
    """a must be finite and strictly positive everywhere, or A is not positive definite."""
    if not torch.isfinite(a).all():
        raise PdefmError("coefficient a has NaN or infinite values; pass a finite field a > 0")
    if not (a > 0).all():
        raise PdefmError(
            f"coefficient a must be positive, got min {a.min().item():.3g}; pass a field a > 0"
        )


def _check_same_shape(a: torch.Tensor, x: torch.Tensor, name: str) -> None:
    if a.shape != x.shape:
        raise PdefmError(
            f"shape mismatch: a has shape {tuple(a.shape)} but {name} has {tuple(x.shape)}; "
            "pass fields of the same shape"
        )


def _check_source(f: torch.Tensor, boundary: str) -> None:
    """f must be finite; when periodic it must also have zero mean (to relative tolerance), as
    the range of A is the zero-mean fields: no u solves A u = f otherwise."""
    if not torch.isfinite(f).all():
        raise PdefmError("source f has NaN or infinite values; pass a finite f")
    if boundary != "periodic":
        return
    mean = f.mean(dim=(-2, -1)).abs()
    rms = f.pow(2).mean(dim=(-2, -1)).sqrt()
    bad = mean > MEAN_TOLERANCE * rms
    if bad.any():
        i = int(bad.nonzero()[0])
        raise PdefmError(
            f"periodic source f must have zero mean, but sample {i} has mean {mean[i]:.3g} "
            f"(rms {rms[i]:.3g}); subtract its mean, f - f.mean(dim=(-2, -1), keepdim=True)"
        )


# -- the operator ------------------------------------------------------------------------------
def spacing(n: int, boundary: str) -> float:
    """Grid spacing h: 1 / n periodic, 1 / (n + 1) Dirichlet (n interior points)."""
    check_boundary(boundary)
    return 1.0 / n if boundary == "periodic" else 1.0 / (n + 1)


def harmonic_mean(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """2 a b / (a + b), elementwise, for a, b > 0: the effective coefficient of two equal cells
    in series."""
    return 2.0 * a * b / (a + b)


def face_coefficients(a: torch.Tensor, boundary: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Face coefficients (ax, ay) of a cell field a of shape (B, n, n).

    periodic:  ax[i, j] = a_{i+1/2, j} for i = 0 .. n-1 (the last face wraps to cell 0),
               ay[i, j] = a_{i, j+1/2}; both (B, n, n).
    dirichlet: ax[i, j] = a_{i-1/2, j} for i = 0 .. n, shape (B, n + 1, n); the two boundary
               faces (i = 0 and i = n) take the interior cell's a. ay likewise, (B, n, n + 1).
    """
    if boundary == "periodic":
        ax = harmonic_mean(a, torch.roll(a, -1, dims=-2))
        ay = harmonic_mean(a, torch.roll(a, -1, dims=-1))
        return ax, ay
    # Replicating the edge cells gives a boundary face the harmonic mean of a cell with itself,
    # i.e. the interior cell's a.
    ex = torch.cat([a[..., :1, :], a, a[..., -1:, :]], dim=-2)
    ey = torch.cat([a[..., :1], a, a[..., -1:]], dim=-1)
    return harmonic_mean(ex[..., :-1, :], ex[..., 1:, :]), harmonic_mean(ey[..., :-1], ey[..., 1:])


def apply_faces(
    ax: torch.Tensor, ay: torch.Tensor, u: torch.Tensor, boundary: str, h: float
) -> torch.Tensor:
    """A u = -div_h(a_face grad_h u) for face coefficients from :func:`face_coefficients` and u
    of shape (B, n, n); returns (B, n, n).

    Fluxes F = a_face (u_right - u_left) live on faces; (A u)_i = -(F_{i+1/2} - F_{i-1/2}) / h^2
    in each direction. Dirichlet: u is padded with the boundary zeros first.
    """
    if boundary == "periodic":
        fx = ax * (torch.roll(u, -1, dims=-2) - u)
        fy = ay * (torch.roll(u, -1, dims=-1) - u)
        div = fx - torch.roll(fx, 1, dims=-2) + fy - torch.roll(fy, 1, dims=-1)
    else:
        zx = u.new_zeros(u.shape[:-2] + (1, u.shape[-1]))
        zy = u.new_zeros(u.shape[:-1] + (1,))
        px = torch.cat([zx, u, zx], dim=-2)
        py = torch.cat([zy, u, zy], dim=-1)
        fx = ax * (px[..., 1:, :] - px[..., :-1, :])  # (B, n + 1, n)
        fy = ay * (py[..., 1:] - py[..., :-1])  # (B, n, n + 1)
        div = fx[..., 1:, :] - fx[..., :-1, :] + fy[..., 1:] - fy[..., :-1]
    return -div / h**2


def apply_operator(a: torch.Tensor, u: torch.Tensor, boundary: str) -> torch.Tensor:
    """(A u) = -div_h(a_face grad_h u) on the ``boundary`` grid (see the module docstring).

    a, u: (B, n, n) or (n, n), the same shape; returns float64 of that shape.
    """
    check_boundary(boundary)
    a, unbatched = _as_field(a, "a")
    u, _ = _as_field(u, "u")
    _check_same_shape(a, u, "u")
    _check_coefficient(a)
    ax, ay = face_coefficients(a, boundary)
    out = apply_faces(ax, ay, u, boundary, spacing(a.shape[-1], boundary))
    return out[0] if unbatched else out


# -- the preconditioner: constant-coefficient inverse, spectral ---------------------------------
def dst1(x: torch.Tensor, dim: int = -1) -> torch.Tensor:
    """Discrete sine transform of type I along ``dim``: y_k = sum_{j=1..n} x_j sin(pi j k / (n+1))
    for k = 1 .. n (1-based as written; the tensors are 0-based). Real x, same shape out.

    dst1(dst1(x)) = (n + 1) / 2 * x, so the inverse is 2 / (n + 1) * dst1. Computed by an FFT of
    the odd extension (0, x_1 .. x_n, 0, -x_n .. -x_1) of length 2 (n + 1), whose transform is
    -2i y_k: O(n log n) instead of the O(n^2) sine sum.
    """
    x = x.movedim(dim, -1)
    zero = x.new_zeros(x.shape[:-1] + (1,))
    odd = torch.cat([zero, x, zero, -x.flip(-1)], dim=-1)
    n = x.shape[-1]
    y = -0.5 * torch.fft.rfft(odd, dim=-1).imag[..., 1 : n + 1]
    return y.movedim(-1, dim)


def laplacian_eigenvalues(n: int, boundary: str) -> torch.Tensor:
    """Eigenvalues of the 5-point -Laplacian_h in the basis the preconditioner uses.

    periodic:  (4 / h^2)(sin^2(pi m / n) + sin^2(pi l / n)) on the rfft2 layout, (n, n // 2 + 1);
               the zero mode (constants) is 0.
    dirichlet: (4 / h^2)(sin^2(pi k / (2(n+1))) + sin^2(pi l / (2(n+1)))), k, l = 1 .. n, on the
               DST-I layout, (n, n); all positive.
    """
    h = spacing(n, boundary)
    if boundary == "periodic":
        sx = torch.sin(math.pi * torch.arange(n, dtype=torch.float64) / n) ** 2
        sy = sx[: n // 2 + 1]
    else:
        sx = torch.sin(math.pi * torch.arange(1, n + 1, dtype=torch.float64) / (2 * (n + 1))) ** 2
        sy = sx
    return 4.0 / h**2 * (sx.reshape(-1, 1) + sy.reshape(1, -1))


def solve_constant(
    abar: torch.Tensor, r: torch.Tensor, boundary: str, eigenvalues: torch.Tensor | None = None
) -> torch.Tensor:
    """z = (-abar Laplacian_h)^-1 r exactly, spectrally; abar (B,), r (B, n, n) -> (B, n, n).

    periodic: rfft2, divide by the symbol, irfft2; the zero mode is set to 0 (the zero-mean
    solution of the zero-mean part of r). dirichlet: the DST-I diagonalises -Laplacian_h with
    u = 0 on the boundary, so z = S (S r / lambda) (2 / (n + 1))^2 with S the 2-D DST-I.
    """
    n = r.shape[-1]
    lam = laplacian_eigenvalues(n, boundary) if eigenvalues is None else eigenvalues
    scale = abar.reshape(-1, 1, 1) * lam
    if boundary == "periodic":
        scale = scale.clone()
        scale[..., 0, 0] = 1.0  # avoid 0 / 0; the zero mode is dropped just below
        r_hat = torch.fft.rfft2(r)
        z_hat = torch.view_as_complex(torch.view_as_real(r_hat) / scale.unsqueeze(-1))
        z_hat[..., 0, 0] = 0.0
        return torch.fft.irfft2(z_hat, s=(n, n))
    r_hat = dst1(dst1(r, dim=-1), dim=-2)
    return dst1(dst1(r_hat / scale, dim=-1), dim=-2) * (2.0 / (n + 1)) ** 2


def mean_coefficient(a: torch.Tensor) -> torch.Tensor:
    """abar per sample, the geometric mean exp(mean(log a)): (B, n, n) -> (B,).

    PCG's iterates do not depend on a constant scale of the preconditioner (scaling M by c
    scales z and p by 1/c and alpha by c, and x is unchanged), so the choice between the
    arithmetic, geometric or harmonic mean does not change the iteration count; it only sets
    the scale of the intermediate vectors. The geometric mean is the natural centre for fields
    whose log is the random part, and it equals a where a is constant, as does any mean.
    """
    return a.log().mean(dim=(-2, -1)).exp()


# -- the solver --------------------------------------------------------------------------------
def _dot(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Per-sample inner products over the grid: (B, n, n) x2 -> (B,)."""
    return (x * y).sum(dim=(-2, -1))


def _norm(x: torch.Tensor) -> torch.Tensor:
    return x.flatten(1).norm(dim=1)


def per_sample(x: torch.Tensor) -> torch.Tensor:
    """(B,) -> (B, 1, 1), to scale fields sample by sample."""
    return x.reshape(-1, 1, 1)


def solve(
    a: torch.Tensor,
    f: torch.Tensor,
    boundary: str,
    tol: float = 1e-10,
    max_iter: int | None = None,
) -> DarcySolution:
    """Solve -div(a grad u) = f, discretised as A u = f (module docstring), by batched PCG.

    a, f: (B, n, n) or (n, n) of the same shape; a finite and > 0; periodic f with zero mean.
    The preconditioner is the exact inverse of -abar Laplacian_h (abar the per-sample geometric
    mean of a, see :func:`mean_coefficient`), applied by FFT (periodic) or DST-I (Dirichlet); for
    constant a it is A^-1 and PCG converges in one iteration.

    Each sample stops when ||r|| <= tol ||f||, checked against the true residual f - A u (not
    only the recursive one, which drifts from it in rounding); a sample whose true residual is
    still too large restarts from it. A converged sample no longer changes; the loop ends when
    all have converged or after ``max_iter`` iterations (default 20 n). Samples that did not
    converge are returned all the same, flagged by ``converged`` and ``residual``.
    """
    check_boundary(boundary)
    a, unbatched = _as_field(a, "a")
    f, _ = _as_field(f, "f")
    _check_same_shape(a, f, "f")
    _check_coefficient(a)
    _check_source(f, boundary)
    if not (isinstance(tol, (int, float)) and tol > 0 and math.isfinite(tol)):
        raise PdefmError(f"tol must be a positive number, got {tol!r}; use e.g. 1e-10")
    n = a.shape[-1]
    if max_iter is None:
        max_iter = 20 * n
    if isinstance(max_iter, bool) or not isinstance(max_iter, int) or max_iter < 0:
        raise PdefmError(f"max_iter must be a whole number >= 0, got {max_iter!r}; or pass None")
    if boundary == "periodic":
        # The admitted mean (<= MEAN_TOLERANCE rms) is outside A's range: solve for the rest.
        f = f - f.mean(dim=(-2, -1), keepdim=True)

    u, iterations = _pcg(a, f, boundary, tol, max_iter)
    if boundary == "periodic":
        u = u - u.mean(dim=(-2, -1), keepdim=True)  # remove the rounding drift along constants
    residual = relative_residual(a, u, f, boundary)
    solution = DarcySolution(u, iterations, residual, residual <= tol)
    if unbatched:
        return DarcySolution(*(x[0] for x in (u, iterations, residual, solution.converged)))
    return solution


def relative_residual(
    a: torch.Tensor, u: torch.Tensor, f: torch.Tensor, boundary: str
) -> torch.Tensor:
    """||A u - f|| / ||f|| per sample, (B, n, n) x3 -> (B,); where f = 0 it is ||A u||."""
    r = apply_operator(a, u, boundary) - f
    fnorm = _norm(f)
    return _norm(r) / torch.where(fnorm > 0, fnorm, torch.ones_like(fnorm))


def _pcg(
    a: torch.Tensor, f: torch.Tensor, boundary: str, tol: float, max_iter: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Batched PCG from u = 0 with a per-sample mask; returns u (B, n, n), iterations (B,)."""
    n = a.shape[-1]
    h = spacing(n, boundary)
    ax, ay = face_coefficients(a, boundary)
    abar = mean_coefficient(a)
    lam = laplacian_eigenvalues(n, boundary)

    def op(x: torch.Tensor, rows: torch.Tensor | slice = slice(None)) -> torch.Tensor:
        return apply_faces(ax[rows], ay[rows], x, boundary, h)

    def precondition(r: torch.Tensor) -> torch.Tensor:
        return solve_constant(abar, r, boundary, lam)

    u = torch.zeros_like(f)
    r = f.clone()
    z = precondition(r)
    p = z
    rz = _dot(r, z)
    threshold = tol * _norm(f)
    active = _norm(r) > threshold  # f = 0 is solved by u = 0 already
    iterations = torch.zeros(f.shape[0], dtype=torch.int64)
    for _ in range(max_iter):
        if not active.any():
            break
        Ap = op(p)
        pAp = _dot(p, Ap)
        # Converged samples take alpha = 0, so their u and r stay as they are.
        alpha = torch.where(active & (pAp > 0), rz / torch.where(pAp > 0, pAp, 1.0), 0.0)
        u = u + per_sample(alpha) * p
        r = r - per_sample(alpha) * Ap
        iterations += active.to(torch.int64)

        restart = torch.zeros_like(active)
        candidates = active & (_norm(r) <= threshold)
        if candidates.any():
            # Confirm with the true residual: the recursive r drifts from f - A u in rounding.
            rows = candidates.nonzero().squeeze(1)
            true_r = f[rows] - op(u[rows], rows)
            ok = _norm(true_r) <= threshold[rows]
            active[rows[ok]] = False
            r[rows[~ok]] = true_r[~ok]  # not there yet: continue from the true residual
            restart[rows[~ok]] = True

        z = precondition(r)
        rz_new = _dot(r, z)
        beta = torch.where(active & ~restart & (rz != 0), rz_new / torch.where(rz != 0, rz, 1.0), 0)
        p = z + per_sample(beta) * p
        rz = rz_new
    return u, iterations
