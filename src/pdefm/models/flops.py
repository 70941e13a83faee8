"""Analytic operation counts of the FNO: forward, training step and evaluation, per sample.

Every matrix product the model executes is listed (``products``) with its multiply-adds
(MACs); the count is 2 flops per real MAC and ``complex_mac_flops`` (default 8: 4 real
multiplies + 4 adds, what a complex GEMM executes) per complex MAC. For one sample on an
n x n grid, with w = width, m = modes, h = head width, N = n + round(p n) the padded grid
(``padding`` p) and L layers, the products of ``pdefm.models.fno`` / ``spectral`` are

    lift            (w, C_in) @ (C_in, n^2)                 w C_in n^2           real
    per layer l, SpectralConv2d on (w, N, N):
      DFT along W   (w N, N) @ (N, 2m)                       2 m w N^2            real
      DFT along H   (w m, N) @ (N, 2m)                       2 m^2 w N            complex
      mode mixing   bmm (2 m^2) x [(1, w) @ (w, w)]          2 m^2 w^2            complex
      inverse H     (w m, 2m) @ (2m, N)                      2 m^2 w N            complex
      inverse W     (w N, 2m) @ (2m, N)                      2 m w N^2            real
    skip            (w, w) @ (w, N^2)                        w^2 N^2              real
    head            (h, w) @ (w, n^2), (C_out, h) @ (h, n^2)  (w h + h C_out) n^2  real

so the forward is exactly quadratic in n (a n^2 + b n + c, no log n: the truncated DFTs are
matrix products, not FFTs), the DFTs growing like m n^2. LoRA of rank r adds, once per
forward whatever the batch, the delta B A of each weight matrix: (rows, r) @ (r, cols), r rows
cols real MACs (a spectral weight is (w, 4 w m^2)); with ``batch`` = B these per-batch
products count 1 / B per sample.

Left out, consistently: elementwise work (GELU, the skip and bias adds, zero padding, the
complex <-> real reshuffles, LoRA's scale and add, the loss) and gradient reductions (bias
gradients, the sum over an expanded weight). ``torch.utils.flop_counter.FlopCounterMode``
counts the same products (mm, bmm, baddbmm) at 2 flops per MAC whatever the dtype, so it
equals these counts with ``complex_mac_flops=2`` (``tests/test_flops.py``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from pdefm.errors import PdefmError
from pdefm.models.fno import check_padding, padding_cells
from pdefm.models.registry import model_info
from pdefm.models.spectral import check_grid

Trainable = str | Callable[[str], bool] | Iterable[str]


@dataclass(frozen=True)
class Product:
    """One matrix product C = A @ B of a forward pass.

    ``macs``: multiply-adds for one sample (for one forward when ``per_batch``: LoRA deltas);
    ``grads``: how many of A, B need a gradient in training (0, 1 or 2), each one product as
    large as the forward's: dA = dC B^T, dB = A^T dC."""

    module: str  # parameter-name prefix of the module that runs it, e.g. "layers.0.spectral"
    what: str
    macs: int
    is_complex: bool = False
    per_batch: bool = False
    grads: int = 0


def forward_flops(
    arch: dict[str, Any], n: int, *, batch: int = 1, complex_mac_flops: int = 8
) -> int:
    """Flops of one forward pass per sample: sum over products of f * MACs (module docstring),
    f = 2 real, ``complex_mac_flops`` complex; per-batch products (LoRA) divided by ``batch``.

    ``arch``: what ``create_model(**arch)`` takes (``model.arch``; missing sizes come from the
    preset); ``n``: the (n x n) input grid."""
    return _total(products(arch, n, trainable="none"), batch, complex_mac_flops, backward=False)


def eval_flops(arch: dict[str, Any], n: int, *, batch: int = 1, complex_mac_flops: int = 8) -> int:
    """Flops per sample of evaluation: the forward pass (``forward_flops``)."""
    return forward_flops(arch, n, batch=batch, complex_mac_flops=complex_mac_flops)


def train_flops_per_sample(
    arch: dict[str, Any],
    n: int,
    trainable: Trainable = "all",
    *,
    batch: int = 1,
    complex_mac_flops: int = 8,
) -> int:
    """Flops per sample of one training step (forward + backward), as autograd executes it:

        train = sum_products F_p (1 + g_p),   g_p = [A_p needs grad] + [B_p needs grad]

    for each product C_p = A_p @ B_p of forward flops F_p: the backward computes
    dA = dC B^T only if A needs a gradient and dB = A^T dC only if B does, each costing F_p.
    An activation needs a gradient iff a trainable parameter lies upstream of it (the input
    never does), a weight iff it is trainable; the DFT bases never. So full training is
    about 3 F less the lift's input gradient, and head-only training is F plus the head's.

    ``trainable``: "all", "none", a predicate on parameter names, or parameter-name prefixes
    (``{"head."}``; the full names ``train.adapt.configure_mode`` returns are prefixes of
    themselves). The optimizer step and elementwise work are left out."""
    return _total(products(arch, n, trainable), batch, complex_mac_flops, backward=True)


def products(arch: dict[str, Any], n: int, trainable: Trainable = "all") -> list[Product]:
    """The matrix products of one forward pass of ``create_model(**arch)`` on n x n, in
    execution order, with the gradients each needs when ``trainable`` parameters train."""
    sizes = _sizes(arch)
    check_grid(n, n, sizes["modes"])
    rule = _rule(trainable)
    walk = _Walk(sizes, rule)
    side = n + padding_cells(n, sizes["padding"])  # the Fourier layers' grid, N
    walk.pointwise("lift", sizes["in_channels"], sizes["width"], n * n)
    for layer in range(sizes["n_layers"]):
        walk.spectral(f"layers.{layer}.spectral", side)
        walk.pointwise(f"layers.{layer}.skip", sizes["width"], sizes["width"], side * side)
        walk.merge()
    walk.pointwise("head.0", sizes["width"], sizes["head_width"], n * n)
    walk.pointwise("head.2", sizes["head_width"], sizes["out_channels"], n * n)
    return walk.done


# -- the walk through the model -----------------------------------------------------------------
class _Walk:
    """Lists products module by module, tracking whether the activation needs a gradient
    (``live``: some trainable parameter lies upstream) so each product's ``grads`` is exact."""

    def __init__(self, sizes: dict[str, Any], rule: Callable[[str], bool]) -> None:
        self.sizes, self.rule = sizes, rule
        self.rank = sizes["lora_rank"]
        self.live = False  # the input of the lift: data, no gradient
        self.branch_live = False  # the Fourier layer's two branches, joined by ``merge``
        self.done: list[Product] = []

    def _trains(self, module: str, *names: str) -> bool:
        present = [n for n in names if self.rank or not n.startswith("lora_")]
        return any(self.rule(f"{module}.{name}") for name in present)

    def _lora(self, module: str, rows: int, cols: int) -> None:
        """The delta B A, (rows, r) @ (r, cols), once per forward."""
        if self.rank:
            grads = self._trains(module, "lora_a") + self._trains(module, "lora_b")
            macs = rows * self.rank * cols
            self.done.append(Product(module, "lora", macs, per_batch=True, grads=grads))

    def pointwise(self, module: str, c_in: int, c_out: int, pixels: int) -> None:
        """1x1 conv (``Pointwise``): baddbmm (c_out, c_in) @ (c_in, pixels)."""
        weight = self._trains(module, "weight", "lora_a", "lora_b")
        self._lora(module, c_out, c_in)
        grads = self.live + weight
        self.done.append(Product(module, "1x1", c_out * c_in * pixels, grads=grads))
        # the skip reads the layer's input, so its output joins the spectral branch in merge
        out = self.live or self._trains(module, "weight", "bias", "lora_a", "lora_b")
        if module.endswith(".skip"):
            self.branch_live = self.branch_live or out
        else:
            self.live = out

    def spectral(self, module: str, side: int) -> None:
        """``SpectralConv2d`` on a (w, side, side) input: the five products of its forward."""
        w, m = self.sizes["width"], self.sizes["modes"]
        weight = self._trains(module, "weight", "lora_a", "lora_b")
        into, out = int(self.live), int(self.live or weight)
        real, cplx = side * side * 2 * m * w, side * 2 * m * m * w
        self._lora(module, w, 2 * w * m * m * 2)
        self.done += [
            Product(module, "dft_w", real, grads=into),
            Product(module, "dft_h", cplx, is_complex=True, grads=into),
            Product(module, "modes", 2 * m * m * w * w, is_complex=True, grads=into + weight),
            Product(module, "idft_h", cplx, is_complex=True, grads=out),
            Product(module, "idft_w", real, grads=out),
        ]
        self.branch_live = bool(out)

    def merge(self) -> None:
        """K h + S h: the layer's output needs a gradient if either branch's does."""
        self.live, self.branch_live = self.branch_live, False


# -- helpers --------------------------------------------------------------------------------------
def _total(found: list[Product], batch: int, complex_mac_flops: int, backward: bool) -> int:
    if isinstance(batch, bool) or not isinstance(batch, int) or batch <= 0:
        raise PdefmError(f"batch must be a positive integer, got {batch!r}")
    per_sample, per_batch = 0, 0
    for p in found:
        flops = p.macs * (complex_mac_flops if p.is_complex else 2) * (1 + backward * p.grads)
        if p.per_batch:
            per_batch += flops
        else:
            per_sample += flops
    return per_sample + round(per_batch / batch)


def _sizes(arch: dict[str, Any]) -> dict[str, Any]:
    """Resolved FNO sizes of ``arch``: the preset's, overridden by ``arch``'s."""
    if not isinstance(arch, dict) or "name" not in arch:
        raise PdefmError(f"arch must be a model's arch dict with a 'name', got {arch!r:.60}")
    sizes = {**model_info(arch["name"]), **arch}
    missing = [k for k in ("in_channels", "width", "modes") if sizes.get(k) is None]
    if missing:
        raise PdefmError(
            f"operation counts need an FNO arch with {', '.join(missing)}; got {arch!r:.80}"
        )
    sizes.setdefault("out_channels", 1)
    sizes.setdefault("n_layers", 4)
    if sizes.get("head_width") is None:
        sizes["head_width"] = 2 * sizes["width"]
    sizes["padding"] = check_padding(sizes.get("padding", 0.0))
    lora = sizes.get("lora")
    sizes["lora_rank"] = int(lora["rank"]) if isinstance(lora, dict) else 0
    return sizes


def _rule(trainable: Trainable) -> Callable[[str], bool]:
    """``trainable`` as a predicate on parameter names."""
    if trainable == "all":
        return lambda name: True
    if trainable == "none":
        return lambda name: False
    if callable(trainable):
        return trainable
    if isinstance(trainable, str):
        raise PdefmError(
            f"trainable must be 'all', 'none', a predicate or parameter-name prefixes, got "
            f"{trainable!r}"
        )
    prefixes = tuple(trainable)
    return lambda name: name.startswith(prefixes)
