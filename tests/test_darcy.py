"""The darcy family end to end: generated like the others, every sample's PCG residual stored,
the card's grid and fields, the physics residual of predictions, and a Poisson checkpoint
fine-tuning on darcy data by channel name."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from pdefm.data.card import load_card
from pdefm.data.dataset import PDEDataset
from pdefm.data.generate import generate_dataset
from pdefm.data.spec import GenerationSpec
from pdefm.errors import PdefmError
from pdefm.pdes import GaussianLatticeSource, Grid, Poisson, get_family
from pdefm.train.metrics import physics_residual

WIDE = GaussianLatticeSource(sigma=0.125)  # wide enough for 16 x 16 grids


def darcy_spec(**config) -> GenerationSpec:
    return GenerationSpec(
        "darcy", 1.0, 10.0, 32, 8, 8, resolution=16, block_size=16, family_config=config,
        source=WIDE,
    )  # fmt: skip


@pytest.fixture(scope="module")
def dirichlet(tmp_path_factory):
    out = tmp_path_factory.mktemp("darcy") / "d"
    generate_dataset(darcy_spec(), out, progress=False)
    return out


def test_card_records_the_grid_the_fields_and_every_residual(dirichlet):
    card = load_card(dirichlet)
    assert card.input_channels == ["source", "diffusion_xx", "diffusion_yy", "diffusion_xy"]
    assert card.field_channels == ["source", "diffusion_xx", "diffusion_yy"]
    assert not card.periodic and set(card.boundary.values()) == {"dirichlet"}
    assert card.family_config["forcing"] == "constant"
    ds = PDEDataset(dirichlet, "train")
    residual = ds.vectors()["coefficients/pcg_residual"]
    assert len(residual) == 32 and residual.max() <= 1e-10  # every sample, at the tolerance
    assert (ds.vectors()["coefficients/pcg_iterations"] >= 1).all()
    x, y = ds.batch(np.arange(4))
    assert (x[:, 0] == 1).all()  # constant forcing
    assert torch.equal(x[:, 1], x[:, 2]) and (x[:, 3] == 0).all()  # a, a, 0
    a = x[:, 1].double()
    contrast = torch.from_numpy(ds.parameters()[:4])
    assert (a.amin(dim=(1, 2)) >= 1 - 1e-6).all()
    assert (a.amax(dim=(1, 2)) <= contrast * (1 + 1e-6)).all()
    ds.close()


def test_stored_solutions_satisfy_the_pde_in_float32(dirichlet):
    """The physics residual of the stored (float32) solution, through the evaluation's own
    residual path: at float32 rounding, far below any model's."""
    card = load_card(dirichlet)
    ds = PDEDataset(dirichlet, "test")
    x, y = ds.batch(np.arange(len(ds)))
    coeffs = {"diffusion_xx": x[:, 1].numpy()}
    res = physics_residual(y[:, 0], x[:, 0], "darcy", card.family_config, coeffs)
    assert res.max() < 1e-5
    ds.close()


def test_contrast_one_is_poisson_up_to_the_discretisation():
    """a = 1 everywhere (contrast 1): the periodic darcy solve equals Poisson's with K = I up
    to the 5-point stencil's error, O(h^2): 0.34% at 32 x 32 for sources of width 1/8 (1.4% at
    16 x 16, 0.04% at 128 x 128 with width 1/32)."""
    spec = GenerationSpec("darcy", 1.0, 1.0 + 1e-12, 16, 4, 4, resolution=32, block_size=16,
                          family_config={"boundary": "periodic", "forcing": "lattice"},
                          source=WIDE)  # fmt: skip
    from pdefm.data.blocks import generate_block

    block = generate_block(spec, "train", 0)
    grid = Grid(32)
    ones = torch.ones(16, dtype=torch.float64)
    k = {"e": ones, "theta": 0 * ones, "k11": ones, "k22": ones, "k12": 0 * ones}
    u_spectral = Poisson(c=0.01).solve(block.source, k, grid)
    rel = (block.solution - u_spectral).flatten(1).norm(dim=1) / u_spectral.flatten(1).norm(dim=1)
    assert 1e-4 < rel.max() < 0.03


@pytest.mark.parametrize(
    "config,needle",
    [
        ({"boundary": "periodic"}, "forcing 'constant' has no periodic solution"),
        ({"boundary": "neumann"}, "darcy constant boundary is 'neumann'"),
        ({"field": "lognormal"}, "darcy constant field is 'lognormal'; use one of smooth"),
        ({"tol": -1.0}, "darcy constant tol must be a positive number"),
        ({"colour": "red"}, "bad constants for family 'darcy'"),
    ],
)
def test_bad_constants_are_one_line_errors(config, needle):
    with pytest.raises(PdefmError, match=needle):
        darcy_spec(**config).validate()


def test_a_contrast_below_one_is_refused():
    spec = GenerationSpec("darcy", 0.5, 10.0, 32, 8, 8, resolution=16, source=WIDE)
    with pytest.raises(PdefmError, match="contrast max a / min a is at least 1"):
        spec.validate()


def test_the_card_command_regenerates_the_same_bytes(tmp_path, dirichlet):
    from pdefm.cli import main

    card = load_card(dirichlet)
    assert "--constant" not in card.command  # defaults: nothing to say
    config = {"field": "threshold", "boundary": "periodic", "forcing": "lattice"}
    spec = GenerationSpec(
        "darcy", 1.0, 10.0, 32, 8, 8, resolution=16, family_config=config, source=WIDE
    )  # fmt: skip (the command has the default block size)
    out = tmp_path / "t"
    generate_dataset(spec, out, progress=False)
    command = load_card(out).command
    assert "--constant boundary=periodic" in command and "--constant field=threshold" in command
    args = command.split()[1:] + ["--out", str(tmp_path / "again"), "--quiet"]
    assert main(args) == 0
    for split in ("train", "val", "test"):
        assert (out / f"{split}.h5").read_bytes() == (
            tmp_path / "again" / f"{split}.h5"
        ).read_bytes()


def test_a_poisson_checkpoint_fine_tunes_on_darcy_by_channel_name(tmp_path, dirichlet):
    from conftest import tiny_run

    poisson = tmp_path / "p"
    pspec = GenerationSpec("poisson", 1.0, 5.0, 32, 8, 8, resolution=16, block_size=16,
                           source=WIDE)  # fmt: skip
    generate_dataset(pspec, poisson, progress=False)
    tiny_run(poisson, tmp_path / "r", "pre", steps=3)
    init = str(tmp_path / "r" / "pre" / "checkpoint")
    record = tiny_run(dirichlet, tmp_path / "r", "ft", steps=3, init=init, n_train=8)
    assert record["status"] == "completed"
    names = ["source", "diffusion_xx", "diffusion_yy", "diffusion_xy"]
    assert record["channels"] == dict(zip(names, names, strict=True))
    assert np.isfinite(record["test"]["residual"])  # the darcy operator scored predictions


def test_family_constants_reach_the_operator():
    pde = get_family("darcy", boundary="periodic", forcing="lattice", c=0.5)
    a = torch.full((1, 8, 8), 2.0, dtype=torch.float64)
    u = torch.zeros((1, 8, 8), dtype=torch.float64)
    u[0, 3, 3] = 1.0
    out = pde.apply(u, {"diffusion_xx": a}, Grid(8))
    assert out[0, 3, 3].item() == pytest.approx(0.5 * 2.0 * 4 * 64)  # c a 4 / h^2


def test_the_card_and_inspect_summarise_the_solver(dirichlet, capsys):
    from pdefm.data.inspect import summary_lines

    card = load_card(dirichlet)
    solver = card.realised("train")["solver"]
    assert solver["max_relative_residual"] <= 1e-10 and solver["max_iterations"] >= 1
    assert any("every sample's relative residual <=" in line for line in summary_lines(card))
