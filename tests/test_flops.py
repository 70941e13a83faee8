"""The analytic operation count of the FNO against a direct count: FlopCounterMode on
fno-micro (forward, and forward + backward in every adaptation mode, padded, with LoRA), and
its shape over the presets (positive, growing with width and modes, quadratic in n)."""

from __future__ import annotations

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from pdefm.errors import PdefmError
from pdefm.models import (
    create_model,
    eval_flops,
    forward_flops,
    list_models,
    model_info,
    train_flops_per_sample,
)
from pdefm.models.flops import products
from pdefm.train.adapt import configure_mode

CASES = [
    ({}, "full"),
    ({"padding": 0.25}, "full"),
    ({"lora": {"rank": 4, "alpha": 4.0}}, "lora"),
    ({}, "head"),
    ({}, "frozen-spectral"),
]


def _direct(model: torch.nn.Module, batch: int, n: int = 16) -> tuple[float, float]:
    """FlopCounterMode's (forward, forward + backward) flops per sample."""
    x = torch.randn(batch, model.in_channels, n, n)
    with FlopCounterMode(display=False) as counter:
        model(x)
    forward = counter.get_total_flops()
    with FlopCounterMode(display=False) as counter:
        model(x).square().mean().backward()
    return forward / batch, counter.get_total_flops() / batch


@pytest.mark.parametrize("batch", [1, 4])
@pytest.mark.parametrize(("options", "mode"), CASES)
def test_the_count_is_what_flop_counter_mode_measures(options, mode, batch):
    """FlopCounterMode counts mm / bmm / baddbmm at 2 flops per multiply-add whatever the dtype,
    complex included, so it is compared with ``complex_mac_flops=2`` (like for like); LoRA's
    deltas run once per batch, hence batch 4 as well. Both agree exactly (1% allowed)."""
    torch.manual_seed(0)
    model = create_model("fno-micro", in_channels=4, out_channels=1, **options)
    names = configure_mode(model, mode)
    forward, train = _direct(model, batch)
    like = {"batch": batch, "complex_mac_flops": 2}
    assert forward_flops(model.arch, 16, **like) == pytest.approx(forward, rel=0.01)
    assert train_flops_per_sample(model.arch, 16, names, **like) == pytest.approx(train, rel=0.01)


def test_complex_products_count_eight_flops_per_multiply_add():
    arch = create_model("fno-micro", in_channels=4).arch
    complex_macs = sum(p.macs for p in products(arch, 16) if p.is_complex)
    assert complex_macs > 0
    assert forward_flops(arch, 16) - forward_flops(arch, 16, complex_mac_flops=2) == (
        6 * complex_macs
    )
    assert eval_flops(arch, 16) == forward_flops(arch, 16)


def test_training_modes_order_the_cost():
    """Backward = forward of every product a gradient passes through: full training costs
    under 3 forwards (no gradient for the lift's input), head-only little more than one."""
    arch = create_model("fno-micro", in_channels=4).arch
    forward = forward_flops(arch, 16)
    full = train_flops_per_sample(arch, 16)
    head = train_flops_per_sample(arch, 16, {"head."})
    assert train_flops_per_sample(arch, 16, "none") == forward
    assert forward < head < train_flops_per_sample(arch, 16, lambda name: "skip" in name) < full
    assert 2 * forward < full < 3 * forward


@pytest.mark.parametrize("name", list_models())
def test_every_preset_has_a_count_growing_with_width_and_modes(name):
    arch = {"name": name, "in_channels": 4}
    info = model_info(name)
    base = forward_flops(arch, 128)
    assert base > 0 and train_flops_per_sample(arch, 128) > base
    assert forward_flops({**arch, "width": info["width"] + 1}, 128) > base
    assert forward_flops({**arch, "modes": info["modes"] + 1}, 128) > base


@pytest.mark.parametrize("padding", [0.0, 0.25])
def test_the_count_is_quadratic_in_n(padding):
    """a n^2 + b n + c exactly (truncated DFTs as matmuls: m n^2 real, m^2 n complex; no FFT,
    no log n), so the third difference vanishes and doubling n tends to quadrupling it, from
    below. (Padding adds round(p n) cells: exactly p n at these n.)"""
    arch = {"name": "fno-1m", "in_channels": 4, "padding": padding}
    f = [forward_flops(arch, n) for n in (64, 128, 192, 256)]
    assert f[3] - 3 * f[2] + 3 * f[1] - f[0] == 0
    assert 3.5 < f[1] / f[0] < f[3] / f[1] < 4


def test_bad_arguments_are_one_line_errors():
    arch = create_model("fno-micro", in_channels=4).arch
    with pytest.raises(PdefmError, match="too small for 4 Fourier modes"):
        forward_flops(arch, 6)
    with pytest.raises(PdefmError, match="batch must be a positive integer"):
        forward_flops(arch, 16, batch=0)
    with pytest.raises(PdefmError, match="trainable must be"):
        train_flops_per_sample(arch, 16, "head")
