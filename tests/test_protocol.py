"""The training protocol: budgets that grow with N, patience, the learning-rate grid grown past
an edge, the convergence flag, refinement of flagged study runs, and the provenance a report
states."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pdefm.data.generate import generate_dataset
from pdefm.data.spec import GenerationSpec
from pdefm.pdes import GaussianLatticeSource
from pdefm.study.spec import load_study
from pdefm.train import fit, loop, search
from pdefm.train.config import RunConfig

WIDE = GaussianLatticeSource(sigma=1 / 16)


@pytest.fixture(scope="module")
def down(tmp_path_factory) -> str:
    root = tmp_path_factory.mktemp("protocol") / "down"
    spec = GenerationSpec(
        "poisson", 5, 10, 160, 16, 16, resolution=32, seed=1, source=WIDE, block_size=32
    )
    generate_dataset(spec, root, progress=False)
    return str(root)


def train(data: str, out: Path, **kw) -> dict:
    kw.setdefault("progress", False)
    kw.setdefault("model", "fno-micro")
    return loop.train(RunConfig(data=data, out=str(out), **kw))


# -- the pieces -----------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "lr, up, expected",
    [(1e-3, True, 3e-3), (3e-3, True, 1e-2), (1e-3, False, 3e-4), (3e-4, False, 1e-4),
     (2e-3, True, 3e-3), (2e-3, False, 1e-3), (1e-5, True, 3e-5)],
)  # fmt: skip
def test_next_lr_walks_the_1_3_10_ladder(lr, up, expected):
    assert search.next_lr(lr, up) == pytest.approx(expected)
    assert 1.5 <= max(expected / lr, lr / expected) < 5


def test_grid_edge():
    assert search.grid_edge(3e-3, [1e-3, 3e-3]) == "high"
    assert search.grid_edge(1e-3, [1e-3, 3e-3]) == "low"
    assert search.grid_edge(1e-3, [1e-3]) == "both"
    assert search.grid_edge(3e-3, [1e-3, 3e-3, 1e-2]) is None


def history(vals: list[float], every: int = 1) -> list[dict]:
    return [{"epoch": every * (i + 1), "val_rel_l2": v} for i, v in enumerate(vals)]


def test_converged_compares_the_two_halves_of_the_budget():
    # still falling: best of the second half 20% below the first half's best
    assert fit.converged(history([1, 0.5, 0.3, 0.25, 0.22, 0.2, 0.19, 0.18]), 8) is False
    # flat second half: converged, even though the last value is the best
    assert fit.converged(history([1, 0.3, 0.2, 0.2, 0.199, 0.197, 0.195, 0.193]), 8) is True
    # 7% better in the second half: still improving (doubling would likely gain more)
    assert fit.converged(history([1, 0.3, 0.2, 0.2, 0.199, 0.19, 0.19, 0.186]), 8) is False
    assert fit.converged(history([1.0]), 8) is None  # nothing after the midpoint
    assert fit.converged(history([1, 0.5]), 8, stopped_early=True) is True


def test_patience_needs_an_epoch_cap():
    from pdefm.errors import PdefmError

    with pytest.raises(PdefmError, match="--patience stops on validation within an epoch cap"):
        RunConfig(data="d", steps=100, epochs=None, patience=5).validate()
    with pytest.raises(PdefmError, match="--lr-extend"):
        RunConfig(data="d", lr_extend=-1).validate()


def test_new_fields_at_their_defaults_keep_old_run_ids():
    resolved = RunConfig(data="d").resolved("hash")
    assert "patience" not in resolved and "lr_extend" not in resolved and "loss" not in resolved
    assert "patience" in RunConfig(data="d", patience=3).resolved("hash")
    assert RunConfig(data="d", loss="rel_l2").resolved("hash")["loss"] == "rel_l2"


def test_an_unknown_loss_is_refused_with_the_choices():
    from pdefm.errors import PdefmError

    with pytest.raises(PdefmError, match="--loss.*mse.*rel_l2"):
        RunConfig(data="d", loss="l1").validate()


def _one_step(loss: str, scale: float) -> tuple[float, float, float]:
    """(the step's loss, mean relative L2, MSE) on a two-sample batch whose second target and
    prediction are multiplied by ``scale``: a huge solution next to an ordinary one."""
    import torch

    from pdefm.train.metrics import relative_l2

    torch.manual_seed(0)
    x, y = torch.randn(2, 1, 8, 8), torch.randn(2, 1, 8, 8)
    y[1] *= scale
    conv = torch.nn.Conv2d(1, 1, 1)
    factor = torch.tensor([1.0, scale]).view(2, 1, 1, 1)
    net = lambda inp: conv(inp) * factor  # noqa: E731
    opt = torch.optim.SGD(conv.parameters(), lr=0.0)  # lr 0: the step leaves the weights
    with torch.no_grad():
        pred = net(x)
    got = float(fit._step(net, opt, x, y, fit.StepRule(loss=loss)))
    return got, float(relative_l2(pred, y).mean()), float((pred - y).square().mean())


def test_rel_l2_loss_is_the_mean_relative_error_and_free_of_scale():
    got, rel, mse = _one_step("rel_l2", 1.0)
    assert got == pytest.approx(rel) and got != pytest.approx(mse)
    assert _one_step("mse", 1.0)[0] == pytest.approx(mse)
    # one sample 1000x larger: rel_l2 does not move, MSE is dominated by that sample
    assert _one_step("rel_l2", 1000.0)[0] == pytest.approx(got, rel=1e-5)
    assert _one_step("mse", 1000.0)[0] > 1e5 * mse


def test_a_run_trains_with_the_rel_l2_loss(down, tmp_path):
    mse = train(down, tmp_path, n_train=16, epochs=3, lrs=(3e-3,))
    rel = train(down, tmp_path, n_train=16, epochs=3, lrs=(3e-3,), loss="rel_l2")
    assert rel["id"] != mse["id"] and rel["config"]["loss"] == "rel_l2"
    assert rel["history"][0]["train_loss"] < 2  # a mean relative error, not an MSE
    assert rel["test"]["rel_l2"] != mse["test"]["rel_l2"]


# -- the loop -------------------------------------------------------------------------------------
def test_record_states_the_budget_and_steps_grow_with_n(down, tmp_path):
    small = train(down, tmp_path, n_train=16, epochs=3, lrs=(3e-3,), batch_size=32)
    large = train(down, tmp_path, n_train=128, epochs=3, lrs=(3e-3,), batch_size=32)
    assert small["budget"] == {
        "rule": "epochs", "batch": 16, "steps_per_epoch": 1, "epochs": 3, "steps": 3,
        "patience": None, "epochs_run": 3, "steps_run": 3, "stopped_early": False,
    }  # fmt: skip
    assert large["budget"]["batch"] == 32 and large["budget"]["steps_run"] == 3 * 4
    assert large["lrs_tried"] == [3e-3] and large["lr_at_edge"] == "both"
    assert large["converged"] in (True, False)


def test_the_grid_grows_past_the_edge_where_the_best_rate_sits(down, tmp_path):
    record = train(down, tmp_path, n_train=16, epochs=4, lrs=(1e-5,), lr_extend=2)
    # 1e-5 is both edges: both neighbours; then the best (the largest) grows once more
    assert record["lrs_tried"] == pytest.approx([3e-6, 1e-5, 3e-5, 1e-4])
    assert set(record["per_lr"]) == {"3e-06", "1e-05", "3e-05", "0.0001"}
    assert record["selected_lr"] == pytest.approx(1e-4) and record["lr_at_edge"] == "high"
    again = train(down, tmp_path, n_train=16, epochs=4, lrs=(1e-5,), lr_extend=2)
    assert again["id"] == record["id"] and again["lrs_tried"] == record["lrs_tried"]


def test_a_rate_inside_the_grid_stops_the_search(down, tmp_path):
    record = train(down, tmp_path, n_train=16, epochs=4, lrs=(1e-6, 3e-3, 1e3), lr_extend=2)
    # 1e3 diverges and bounds the grid from above: 3e-3 is inside, nothing is added
    assert record["per_lr"]["1000"]["status"] == "failed"
    assert record["selected_lr"] == pytest.approx(3e-3) and record["lr_at_edge"] is None
    assert record["lrs_tried"] == pytest.approx([1e-6, 3e-3, 1e3])


def test_patience_stops_a_stalled_run_and_counts_as_converged(down, tmp_path, monkeypatch):
    real = fit.evaluate_model

    def stalled(model, batches, residual=False):
        out = real(model, batches, residual)
        return {**out, "rel_l2": 0.5} if not residual else out  # validation never improves

    monkeypatch.setattr(fit, "evaluate_model", stalled)
    record = train(down, tmp_path, n_train=16, epochs=100, patience=8, lrs=(1e-3,))
    budget = record["budget"]
    assert budget["rule"] == "patience" and budget["stopped_early"] is True
    assert budget["epochs_run"] == 10 and budget["epochs"] == 100  # best at 2, then 8 more
    assert record["converged"] is True
    assert [h["epoch"] for h in record["history"]] == [2, 4, 6, 8, 10]


# -- studies --------------------------------------------------------------------------------------
STUDY = """\
name: proto
resolution: 32
sigma: 0.0625
datasets:
  down: {family: poisson, range: [5, 10], n_train: 32, n_val: 16, n_test: 16, seed: 1}
downstream:
  tasks: [down]
  sizes: [8]
  inits: [scratch]
  models: [fno-micro]
  lrs: [1e-5]
  lr_extend: 0
  seeds: [0]
  epochs: 3
"""


def test_study_budget_keys_and_lr_grid(tmp_path):
    path = tmp_path / "s.yaml"
    path.write_text(STUDY.replace("  lr_extend: 0\n", "").replace("lrs: [1e-5]", "lrs: auto"))
    (run,) = [r for r in load_study(path).runs if r.kind == "downstream"]
    assert run.config["lrs"] == [1e-3, 3e-3] and run.config["lr_extend"] == 3
    path.write_text(STUDY.replace("  lr_extend: 0\n", "").replace("epochs: 3", "epochs: 50\n"
                                  "  patience: 10"))  # fmt: skip
    (run,) = [r for r in load_study(path).runs if r.kind == "downstream"]
    assert run.config["lr_extend"] == 2  # the downstream default
    assert run.config["epochs"] == 50 and run.config["patience"] == 10


def test_refine_reruns_flagged_runs_with_twice_the_budget(tmp_path, capsys):
    from pdefm.cli import main
    from pdefm.study.refine import load_refinements
    from pdefm.study.results import load_results

    path = tmp_path / "s.yaml"
    path.write_text(STUDY)
    root = tmp_path / "proto"
    assert main(["study", "run", str(path), "--out", str(root), "--quiet"]) == 0
    (first,) = [r for r in load_results(root) if r["kind"] == "downstream"]
    assert first["lr_at_edge"] == "both" and first["budget_factor"] == 1  # one rate: an edge
    assert main(["study", "run", str(path), "--out", str(root), "--quiet", "--refine"]) == 0
    (entry,) = load_refinements(root).values()
    assert entry["of"] == first["run_id"] and entry["factor"] == 2
    assert entry["config"]["epochs"] == 6 and entry["config"]["lr_extend"] == 2
    (row,) = [r for r in load_results(root) if r["kind"] == "downstream"]
    assert row["run_id"] == entry["id"] and row["budget_factor"] == 2 and row["epochs"] == 6
    assert len(row["lrs_tried"].split()) == 4  # 1e-5 grown twice: 3e-6 and 3e-5, then 1e-4
    # the original record is kept: the refinement only stands in for it
    assert (root / "runs" / first["run_id"] / "record.json").is_file()
    # still at an edge: refining again doubles the refined budget
    assert main(["study", "run", str(path), "--out", str(root), "--quiet", "--refine"]) == 0
    (row,) = [r for r in load_results(root) if r["kind"] == "downstream"]
    assert row["budget_factor"] == 4 and row["epochs"] == 12
    # status counts the refinements by budget and state
    capsys.readouterr()
    assert main(["study", "status", str(root)]) == 0
    out = capsys.readouterr().out
    assert "refinements at budget x 2 (--refine): 1: 1 completed" in out
    assert "refinements at budget x 4 (--refine): 1: 1 completed" in out


def test_report_states_its_setup_and_provenance(tmp_path, capsys):
    from pdefm.cli import main

    path = tmp_path / "s.yaml"
    path.write_text(STUDY)
    root = tmp_path / "proto"
    assert main(["study", "run", str(path), "--out", str(root), "--quiet"]) == 0
    (entry,) = json.loads((root / "provenance.json").read_text())["invocations"]
    assert entry["command"] == f"pdefm study run {path} --out {root} --quiet"
    assert entry["pdefm_version"] and entry["torch_version"] and entry["python"]
    assert main(["report", str(root)]) == 0
    md = (root / "report" / "report.md").read_text()
    assert "## Setup" in md and f"`pdefm report {root}`" in md
    assert f"`pdefm study run {path} --out {root} --quiet` started" in md
    assert "## Appendix: the study file as run" in md and "lr_extend: 0" in md
    assert "## Runs to check" in md and "only one tried" in md  # one rate: at the edge
    assert "32 x 32" in md and "32 / 16 / 16" in md  # grid and split sizes
    setup = md[md.index("## Setup") : md.index("## Runs to check")]
    assert "| scratch | fno-micro | 8 | 8 | 3 | 3 | epochs | 1e-05 | 1e-05 (1) | 0 |" in setup


def test_refine_factor_is_checked(tmp_path, refused):
    path = tmp_path / "s.yaml"
    path.write_text(STUDY)
    refused(["study", "run", str(path), "--refine", "1"], "--refine must be")
    refused(["study", "run", str(path), "--refine", "1000"], "--refine must be")
