"""The family catalogue: facts without torch, one registration call for a new family.

The toy family below lives in this file only: registering it is enough for pdefm to generate
its data, train a model on it, evaluate it zero-shot and compute its physics residual.
"""

from __future__ import annotations

import math
import subprocess
import sys
from dataclasses import dataclass
from typing import ClassVar

import pytest
import torch

from pdefm import catalogue
from pdefm.catalogue import FamilyEntry, ParameterSpec
from pdefm.data.generate import generate_dataset
from pdefm.data.mixture import union_channels
from pdefm.data.spec import GenerationSpec
from pdefm.errors import PdefmError
from pdefm.pdes import GaussianLatticeSource, Grid, PDEFamily, get_family
from pdefm.train import loop
from pdefm.train.config import RunConfig


@dataclass(frozen=True)
class Screened(PDEFamily):
    """Screened Poisson, -c lap u + a u = f: symbol c |k|^2 + a, never zero for a > 0."""

    c: float = 0.01

    name: ClassVar[str] = "toy_screened"
    coefficient_names: ClassVar[tuple[str, ...]] = ("a",)
    remove_mean: ClassVar[bool] = False

    def sample_coefficients(self, gen, parameter, f_hat, grid: Grid):
        return {"a": parameter}

    def symbol(self, coeffs, grid: Grid) -> torch.Tensor:
        return self.c * (grid.kx**2 + grid.ky**2).unsqueeze(0) + coeffs["a"].reshape(-1, 1, 1)

    def channel_values(self, coeffs) -> torch.Tensor:
        return coeffs["a"].unsqueeze(1)


WIDE_SOURCES = GaussianLatticeSource(sigma=0.125)  # 2 grid points per sigma at 16 x 16
TOY = FamilyEntry(
    name="toy_screened",
    title="Screened Poisson",
    equation="-c lap u + a u = f",
    parameter=ParameterSpec("a", "screening coefficient"),
    default_range=(1.0, 2.0),
    coefficient_channels=("screening_a",),
    max_parameter=100.0,
    max_reason="a toy",
    solver=Screened,
)


@pytest.fixture
def toy():
    catalogue.register_family(TOY)  # the one registration call
    yield TOY
    catalogue.unregister_family(TOY.name)


def test_a_family_registered_from_a_test_file_generates_trains_and_evaluates(toy, tmp_path):
    spec = GenerationSpec(
        toy.name, 1.0, 2.0, 48, 16, 16, resolution=16, block_size=16, source=WIDE_SOURCES
    )
    card = generate_dataset(spec, tmp_path / "data", progress=False).to_json()
    assert card["channels"]["inputs"] == ["source", "screening_a"]
    assert card["equation"] == toy.equation and card["parameter"]["name"] == "a"
    assert card["realised"]["train"]["parameter"]["inside_declared_range"]

    common = dict(model="fno-micro", progress=False, out=str(tmp_path / "runs"))
    record = loop.train(RunConfig(data=str(tmp_path / "data"), lrs=(3e-3,), epochs=60, **common))
    assert record["status"] == "completed"
    # the model learnt the operator, and the residual used the toy's own symbol
    assert record["test"]["rel_l2"] < 0.5
    assert math.isfinite(record["test"]["residual"]) and record["test"]["residual"] > 0
    zero = loop.train(
        RunConfig(
            data=str(tmp_path / "data"),
            init=record["checkpoint"],
            mode="zero-shot",
            epochs=None,
            **common,
        )
    )
    assert zero["test"]["rel_l2"] == pytest.approx(record["test"]["rel_l2"], rel=1e-6)


def test_the_toy_solver_meets_its_equation(toy):
    """An independent check: u = sin(2 pi x) solves -c lap u + a u = (c (2 pi)^2 + a) u."""
    pde, grid = get_family(toy.name), Grid(16)
    u = torch.sin(2 * math.pi * grid.coords).reshape(16, 1).expand(16, 16).unsqueeze(0)
    a = torch.tensor([1.5], dtype=torch.float64)
    f = (0.01 * (2 * math.pi) ** 2 + 1.5) * u
    torch.testing.assert_close(pde.solve(f, {"a": a}, grid), u, atol=1e-12, rtol=0)


def test_registration_extends_the_union_order_at_its_end(toy):
    order = catalogue.union_order()
    assert order[-1] == "screening_a"
    assert order[:8] == (
        "source",
        "diffusion_xx",
        "diffusion_yy",
        "diffusion_xy",
        "velocity_x",
        "velocity_y",
        "helmholtz_c",
        "helmholtz_w",
    )
    union = union_channels([["source", "screening_a"], ["source", "helmholtz_w"]])
    assert union == ["source", "helmholtz_w", "screening_a"]


def test_an_unregistered_family_is_refused_with_the_choices(tmp_path):
    spec = GenerationSpec("toy_screened", 1.0, 2.0, 48, 16, 16, resolution=16, block_size=16)
    with pytest.raises(
        PdefmError, match="unknown PDE family 'toy_screened'; choose one of poisson"
    ):
        generate_dataset(spec, tmp_path / "data", progress=False)
    assert not (tmp_path / "data").exists()


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"name": "Bad Name"}, "lower case"),
        ({"name": "poisson"}, "already registered"),
        ({"name": "mixture"}, "already registered"),
        ({"default_range": (2.0, 1.0)}, "inverted"),
        ({"coefficient_channels": ("source",)}, "coefficient channels"),
        ({"coefficient_channels": ("has_a",)}, "coefficient channels"),
        ({"coefficient_channels": ("a", "a")}, "coefficient channels"),
    ],
)
def test_a_bad_entry_is_refused(change, message):
    from dataclasses import replace

    with pytest.raises(ValueError, match=message):
        catalogue.register_family(replace(TOY, **change))
    assert "toy_screened" not in catalogue.family_names()


def test_built_in_entries_agree_with_their_solvers():
    for name in catalogue.BUILT_IN:
        entry = catalogue.family(name)
        pde = get_family(name)
        assert pde.name == name and pde.entry is entry
        assert pde.input_channels == entry.input_channels
    with pytest.raises(ValueError, match="built-in"):
        catalogue.unregister_family("poisson")


def test_the_catalogue_imports_no_torch():
    code = "import sys, pdefm.catalogue; assert 'torch' not in sys.modules, 'torch imported'"
    subprocess.run([sys.executable, "-c", code], check=True)
