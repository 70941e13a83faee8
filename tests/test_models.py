"""pdefm.models: presets, gradients, the fast spectral layer against the reference, LoRA."""

from __future__ import annotations

import json
import math

import pytest
import torch

from pdefm.errors import PdefmError
from pdefm.models import (
    SpectralConv2d,
    add_lora,
    create_model,
    fourier_parameter_count,
    list_models,
    lora_parameters,
    model_info,
    parameter_count,
)
from pdefm.models.reference import ReferenceSpectralConv2d, copy_weights

# every registered model small enough to build and run in a test, so a new preset is tested
# without editing this file
CHEAP = [name for name in list_models() if parameter_count(name, 3, 2) < 4_000_000]
BUILDABLE = [name for name in list_models() if parameter_count(name, 5, 2) < 40_000_000]
LADDER = {
    "fno-64k": 65_536,
    "fno-1m": 1_048_576,
    "fno-16m": 16_777_216,
    "fno-67m": 67_108_864,
    "fno-256m": 268_435_456,
}


def test_list_models_in_ladder_order():
    names = list_models()
    assert names[:2] == ["fno-micro", "fno-tiny"]
    assert names[2:] == list(LADDER)
    assert model_info("fno-16m") == {
        "name": "fno-16m",
        "width": 64,
        "modes": 16,
        "n_layers": 4,
        "head_width": None,
        "label": "16M",
    }


@pytest.mark.parametrize("name", CHEAP)
def test_every_parameter_gets_a_gradient_at_two_resolutions(name):
    torch.manual_seed(0)
    model = create_model(name, 3, 2)
    for n in (32, 64):
        model.zero_grad()
        x = torch.randn(2, 3, n, n)
        y = model(x)
        assert y.shape == (2, 2, n, n)
        y.square().mean().backward()
        for pname, param in model.named_parameters():
            assert param.grad is not None and param.grad.abs().max() > 0, pname


def test_parameter_names_follow_the_interface():
    names = [name for name, _ in create_model("fno-micro", 2).named_parameters()]
    prefixes = ("lift.", "head.") + tuple(
        f"layers.{i}.{part}." for i in range(4) for part in ("spectral", "skip")
    )
    assert all(name.startswith(prefixes) for name in names)
    assert "layers.3.spectral.weight" in names and "layers.0.skip.bias" in names


@pytest.mark.parametrize("name", list(LADDER))
def test_ladder_parameter_counts(name):
    nominal = LADDER[name]
    assert fourier_parameter_count(name) == nominal
    total = parameter_count(name, 4, 1)
    assert abs(total - nominal) / nominal < 0.05


def test_the_cheap_lists_hold_the_small_presets():
    assert {"fno-micro", "fno-tiny", "fno-64k", "fno-1m"} <= set(CHEAP)
    assert "fno-16m" in BUILDABLE


@pytest.mark.parametrize("name", BUILDABLE)
def test_parameter_count_matches_an_instance(name):
    model = create_model(name, 5, 2)
    assert parameter_count(name, 5, 2) == sum(p.numel() for p in model.parameters())
    spectral = sum(p.numel() for n, p in model.named_parameters() if ".spectral." in n)
    assert spectral == fourier_parameter_count(name)


def test_fast_layer_equals_reference_layer():
    torch.manual_seed(1)
    fast = SpectralConv2d(3, 5, 6).double()
    ref = ReferenceSpectralConv2d(3, 5, 6).double()
    copy_weights(fast, ref)
    for shape in [(2, 3, 16, 16), (2, 3, 24, 32), (1, 3, 15, 13)]:
        x = torch.randn(shape, dtype=torch.float64)
        torch.testing.assert_close(fast(x), ref(x), atol=1e-10, rtol=0)


def _plane_wave(n: int, a: int, b: int) -> torch.Tensor:
    """cos(2 pi (a x + b y)) on an n x n grid, x along W and y along H: (1, 1, n, n)."""
    grid = torch.arange(n, dtype=torch.float64) / n
    y, x = torch.meshgrid(grid, grid, indexing="ij")
    return torch.cos(2 * math.pi * (a * x + b * y))[None, None]


def test_single_mode_gets_the_analytic_response():
    """For a retained mode (kx, ky) = (a, b) with b >= 0, u = cos(theta) has u_hat(b, a) =
    n^2 / 2 and its conjugate partner outside the stored half, so the output is
    Re(W(b, a) e^{i theta}) = Re W cos(theta) - Im W sin(theta)."""
    n, m, a, b = 16, 4, 2, 1
    layer = SpectralConv2d(1, 1, m).double()
    with torch.no_grad():
        layer.weight.zero_()
        layer.weight[0, 0, 0, b, a] = torch.tensor([0.7, -0.3], dtype=torch.float64)
    grid = torch.arange(n, dtype=torch.float64) / n
    y, x = torch.meshgrid(grid, grid, indexing="ij")
    theta = 2 * math.pi * (a * x + b * y)
    expected = 0.7 * torch.cos(theta) + 0.3 * torch.sin(theta)
    torch.testing.assert_close(layer(_plane_wave(n, a, b))[0, 0], expected, atol=1e-12, rtol=0)


def test_modes_beyond_m_are_filtered_out():
    n, m = 32, 4
    layer = SpectralConv2d(1, 1, m).double()
    with torch.no_grad():
        layer.weight.fill_(1.0)
    # retained: kx in 0..m-1, ky in -m..m-1 (rows 0..m-1 and H-m..H-1)
    for a, b in [(m, 0), (0, m + 1), (m + 3, 2), (1, n // 2), (2, -(m + 1))]:
        out = layer(_plane_wave(n, a, b))
        assert out.abs().max() < 1e-12, (a, b)
    for a, b in [(m - 1, m - 1), (1, -m)]:  # edges of the retained blocks
        assert layer(_plane_wave(n, a, b)).abs().max() > 0.1, (a, b)


def test_lora_keeps_output_and_trains_only_lora():
    torch.manual_seed(2)
    model = create_model("fno-tiny", 3)
    x = torch.randn(2, 3, 32, 32)
    before = model(x).detach()
    full = sum(p.numel() for p in model.parameters())
    names = add_lora(model, rank=2)
    assert names and all("lora_" in name for name in names)
    assert "layers.0.spectral.lora_a" in names and "head.0.lora_b" in names
    torch.testing.assert_close(model(x), before, atol=0, rtol=0)
    model(x).square().mean().backward()
    for name, param in model.named_parameters():
        assert (param.grad is not None) == ("lora_" in name), name
    assert all(model.get_parameter(n).grad.abs().max() > 0 for n in names if "lora_b" in n)
    assert sum(p.numel() for p in lora_parameters(model)) < 0.2 * full
    assert model.arch["lora"] == {"rank": 2, "alpha": 2.0}


def test_lora_arch_round_trip():
    model = create_model("fno-micro", 2, width=12)
    add_lora(model, 3, alpha=6.0)
    arch = json.loads(json.dumps(model.arch))
    rebuilt = create_model(**arch)
    shapes = {k: v.shape for k, v in model.state_dict().items()}
    assert {k: v.shape for k, v in rebuilt.state_dict().items()} == shapes
    rebuilt.load_state_dict(model.state_dict())
    x = torch.randn(1, 2, 16, 16)
    torch.testing.assert_close(rebuilt(x), model(x))


def test_arch_round_trip_with_overrides():
    model = create_model("fno-tiny", 4, 2, width=8, modes=3, head_width=5)
    assert model.arch == {
        "name": "fno-tiny",
        "in_channels": 4,
        "out_channels": 2,
        "width": 8,
        "modes": 3,
        "n_layers": 4,
        "head_width": 5,
    }
    rebuilt = create_model(**model.arch)
    shapes = {k: v.shape for k, v in rebuilt.state_dict().items()}
    assert shapes == {k: v.shape for k, v in model.state_dict().items()}


@pytest.mark.parametrize(
    ("call", "words"),
    [
        (lambda: create_model("fno-huge", 3), ["unknown model preset 'fno-huge'", "fno-tiny"]),
        (lambda: create_model("fno-tiny", 3, depth=2), ["unknown option 'depth'", "modes"]),
        (lambda: create_model("fno-tiny", 3, width=0), ["width must be a positive", "0"]),
        (lambda: create_model("fno-tiny", 3, modes=-1), ["modes must be a positive"]),
        (lambda: add_lora(create_model("fno-micro", 1), 0), ["rank must be a positive"]),
    ],
)
def test_bad_input_gives_one_line_errors(call, words):
    with pytest.raises(PdefmError) as err:
        call()
    message = str(err.value)
    assert "\n" not in message
    assert all(word in message for word in words), message


def test_too_small_grid_is_a_one_line_error():
    model = create_model("fno-16m", 1)
    with pytest.raises(PdefmError) as err:
        model(torch.randn(1, 1, 16, 16))
    assert str(err.value) == (
        "grid 16x16 is too small for 16 Fourier modes; use a grid of at least 32 or fewer modes"
    )
    with pytest.raises(PdefmError, match="expected \\(batch, 1, height, width\\)"):
        model(torch.randn(1, 2, 32, 32))


def test_bf16_autocast_forward_and_backward_run_and_stay_close():
    """The --bf16 path (autocast; Fourier layers in float32) exercised on CPU."""
    torch.manual_seed(0)
    model = create_model("fno-tiny", 4, 1)
    x = torch.randn(2, 4, 32, 32)
    ref = model(x)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = model(x)
    out.float().square().mean().backward()
    assert all(p.grad is not None for p in model.parameters())
    rel = (out.float() - ref).norm() / ref.norm()
    assert rel < 0.05, rel
