"""Protocol 2 in study files: the protocol version, the default downstream budget (500 epochs
at every size), steps growing like N^p, and the warning for budgets that starve large N."""

from __future__ import annotations

import pytest

from pdefm.errors import PdefmError
from pdefm.study.budgets import epochs_at
from pdefm.study.spec import load_study
from pdefm.train.config import PROTOCOL

STUDY = """\
name: budgets
resolution: 16
sigma: 0.125
datasets:
  pre:  {family: poisson, range: [1, 5], n_train: 64, n_val: 16, n_test: 16}
  down: {family: poisson, range: [5, 10], n_train: 1024, n_val: 16, n_test: 16, seed: 1}
pretrain:
  p: {data: pre, model: fno-micro, epochs: 3, lrs: [3e-3]}
downstream:
  tasks: [down]
  sizes: [16, 64, 256, 1024]
  inits: [scratch, p]
  models: [fno-micro]
  lrs: [0.003]
BUDGET
"""


def study(tmp_path, budget: str = "", top: str = ""):
    path = tmp_path / "s.yaml"
    path.write_text(STUDY.replace("BUDGET\n", budget).replace("name: budgets\n", f"name: b\n{top}"))
    return load_study(path)


def down(s) -> list:
    return [r for r in s.runs if r.kind == "downstream" and r.labels["method"] != "zero-shot"]


def test_runs_carry_the_protocol_and_a_version_1_study_keeps_the_ids_of_before(tmp_path):
    new = study(tmp_path, "  epochs: 10\n")
    assert all(r.config["protocol"] == PROTOCOL == 2 for r in new.runs if r.kind != "data")
    old = study(tmp_path, "  epochs: 10\n", "protocol: 1\n")
    assert all("protocol" not in r.config for r in old.runs if r.kind != "data")
    pairs = [(a, b) for a, b in zip(new.runs, old.runs, strict=True) if a.kind != "data"]
    assert pairs and all(a.id != b.id for a, b in pairs)
    with pytest.raises(PdefmError, match=r"s.yaml:\d+: protocol must be"):
        study(tmp_path, "  epochs: 10\n", "protocol: 3\n")


def test_the_default_downstream_budget_is_500_epochs_at_every_size(tmp_path):
    s = study(tmp_path)
    assert {r.config["epochs"] for r in down(s)} == {500} and not s.warnings


def test_steps_power_grows_the_steps_like_n_to_the_p(tmp_path):
    s = study(tmp_path, "  steps: 100\n  steps_power: 0.5\n")
    steps = {r.labels["n_train"]: r.config["steps"] for r in down(s)}
    # examples seen grow like N^1/2: 1,600 at 16 (full batch), 3,200 at 64 (full batch),
    # 6,400 at 256 and 12,800 at 1,024 (batch 32)
    assert steps == {16: 100, 64: 50, 256: 200, 1024: 400}
    assert all("steps_power" not in r.config for r in down(s))
    assert not s.warnings  # p = 1/2 is the slowest growth the protocol allows
    for bad, why in (("0.25", "must be in"), ("true", "must be"), ("1.5", "must be in")):
        with pytest.raises(PdefmError, match=why):
            study(tmp_path, f"  steps: 100\n  steps_power: {bad}\n")
    with pytest.raises(PdefmError, match="give steps: S with it"):
        study(tmp_path, "  epochs: 100\n  steps_power: 0.5\n")


def test_a_flat_step_budget_warns_naming_the_first_starved_size(tmp_path):
    s = study(tmp_path, "  steps: 1000\n")
    assert len(s.warnings) == 2  # scratch and fine-tuning curves
    assert all("N = 256 gets" in w and "steps_power" in w for w in s.warnings)
    # full batch up to 64: 1000 epochs at 16 and 64; batch 32 above: 1000 / 8 at N = 256
    assert epochs_at({"steps": 1000}, 64) == 1000 and epochs_at({"steps": 1000}, 256) == 125


def test_the_warning_is_printed_by_plan_and_run(tmp_path, capsys):
    from pdefm.cli import main

    path = tmp_path / "s.yaml"
    path.write_text(STUDY.replace("BUDGET\n", "  steps: 1000\n"))
    assert main(["study", "plan", str(path), "--out", str(tmp_path / "out")]) == 0
    assert "warning: downstream down (scratch, full, fno-micro): N = 256" in capsys.readouterr().out
