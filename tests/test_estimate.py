"""`pdefm study plan --estimate`: the work a study asks for, counted as the loop plans it."""

from __future__ import annotations

from pathlib import Path

import pytest

from pdefm.study import estimate
from pdefm.study.spec import load_study

DEMO = Path(__file__).parents[1] / "src/pdefm/study/demo.yaml"


def test_lr_count_covers_every_extension():
    assert estimate.lr_count(2, 0) == (2, 2)
    assert estimate.lr_count(2, 2) == (2, 4)
    assert estimate.lr_count(1, 2) == (1, 4)  # one rate grows both ways first


def test_demo_work_is_counted_as_the_loop_plans_it():
    works = estimate.plan_work(load_study(DEMO))
    pre = [w for w in works if w.run.kind == "pretrain"]
    down = [w for w in works if w.run.kind == "downstream"]
    assert len(pre) == 1 and pre[0].batch == 32 and pre[0].steps == 100 * 1024 // 32
    assert len(down) == 24 and {w.steps for w in down} == {800}  # full batch: 800 epochs
    assert {w.batch for w in down} == {4, 8, 16, 32}
    low = sum(w.samples()[0] for w in down)
    assert low == 800 * (4 + 8 + 16 + 32) * 2 * 3 * 2  # epochs x N x lrs x seeds x methods
    assert sum(w.samples()[1] for w in down) == 2 * low  # two extensions at most: 4 rates


def test_estimate_adds_steps_and_validation_per_rate():
    works = [w for w in estimate.plan_work(load_study(DEMO)) if w.run.kind == "downstream"]
    low, high = estimate.estimate_seconds(works, timer=lambda *key: 0.01)["downstream"]
    # per rate: 800 steps x 10 ms + 25 validations of 64 samples at a third of a step each
    per_rate = [800 * 0.01 + 25 * 64 * (0.01 / w.batch) / 3 for w in works]
    assert low == pytest.approx(2 * sum(per_rate)) and high == pytest.approx(4 * sum(per_rate))


def test_plan_prints_the_work_and_with_estimate_the_time(tmp_path, capsys, monkeypatch):
    from pdefm.cli import main

    monkeypatch.setattr(estimate, "STEP_SECONDS", 0.01)
    assert main(["study", "plan", str(DEMO), "--out", str(tmp_path / "d")]) == 0
    out = capsys.readouterr().out
    assert "downstream: 24 training runs (48 to 96 trainings counting each learning rate)" in out
    assert "576,000 to 1,152,000 training samples" in out and "about" not in out
    argv = ["study", "plan", str(DEMO), "--out", str(tmp_path / "d"), "--estimate"]
    assert main([*argv, "--workers", "2"]) == 0
    out = capsys.readouterr().out
    assert "with 2 workers (at best)" in out and "training samples; about " in out
    assert not (tmp_path / "d").exists()  # plan writes nothing


def test_plan_refuses_bad_workers_before_printing(refused):
    refused(["study", "plan", str(DEMO), "--workers", "0"], "--workers", ">= 1")
