"""Training settings declared once (RunConfig's schema) reach the CLI, the study file and the
API; gradient clipping is the worked example of a setting added in one place."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from pdefm.api import finetune
from pdefm.cli import build_parser
from pdefm.errors import PdefmError
from pdefm.study.spec import GRID_KEYS, MACHINE_KEYS, STAGE_KEYS, load_study
from pdefm.train import fit
from pdefm.train.config import RunConfig
from pdefm.train.settings import GRID, MACHINE, STAGE, settings_of, study_keys

STUDY = """\
name: tiny
resolution: 32
sigma: 0.0625
datasets:
  pre:  {family: poisson, range: [1, 5], n_train: 64, n_val: 16, n_test: 16}
  down: {family: poisson, range: [5, 10], n_train: 32, n_val: 16, n_test: 16, seed: 1}
pretrain:
  p: {data: pre, model: fno-micro, epochs: 3, lrs: [3e-3]}
downstream:
  tasks: [down]
  sizes: [4]
  inits: [scratch, p]
  models: [fno-micro]
  lrs: [0.003]
  steps: 10
"""


def study_file(tmp_path, text: str = STUDY):
    path = tmp_path / "study.yaml"
    path.write_text(text)
    return path


def runs_by_kind(study, kind: str):
    return [r for r in study.runs if r.kind == kind]


def train_help() -> str:
    sub = build_parser()._subparsers._group_actions[0].choices["train"]
    return sub.format_help()


def test_every_setting_has_its_flag_in_train_help():
    text = train_help()
    for name, (_, schema) in settings_of(RunConfig).items():
        assert schema.flag_name(name) in text, name
    assert "--grad-clip C" in text and "no clipping" in text


def test_every_study_setting_is_a_study_key():
    assert set(study_keys(RunConfig, STAGE)) <= STAGE_KEYS
    assert set(study_keys(RunConfig, GRID)) <= GRID_KEYS
    assert set(study_keys(RunConfig, MACHINE)) == MACHINE_KEYS == {"device", "compile", "tf32"}
    assert {"grad_clip", "bf16", "new_channels"} <= GRID_KEYS


def test_grad_clip_from_the_cli(tmp_path):
    args = build_parser().parse_args(["train", "d", "--grad-clip", "0.5"])
    assert args.grad_clip == 0.5
    args = build_parser().parse_args(["train", "d"])
    assert args.grad_clip is None


def test_grad_clip_from_a_study_reaches_the_runs_and_their_ids(tmp_path):
    plain = load_study(study_file(tmp_path))
    text = STUDY.replace("epochs: 3, lrs", "epochs: 3, grad_clip: 1.0, lrs")
    text = text.replace("  steps: 10\n", "  steps: 10\n  grad_clip: 0.5\n")
    clipped = load_study(study_file(tmp_path, text))
    [stage] = runs_by_kind(clipped, "pretrain")
    assert stage.config["grad_clip"] == 1.0
    assert all(r.config["grad_clip"] == 0.5 for r in runs_by_kind(clipped, "downstream"))
    plain_ids = {r.id for r in plain.runs if r.kind != "data"}
    assert plain_ids.isdisjoint(r.id for r in clipped.runs if r.kind != "data")


def test_a_bad_grad_clip_in_a_study_names_its_line(tmp_path):
    text = STUDY.replace("  steps: 10\n", "  steps: 10\n  grad_clip: -1\n")
    with pytest.raises(PdefmError, match=r"study.yaml:16:.*grad_clip.*> 0"):
        load_study(study_file(tmp_path, text))


def test_a_misspelt_choice_in_a_study_gets_a_suggestion(tmp_path):
    text = STUDY.replace("  steps: 10\n", "  steps: 10\n  loss: rel_l3\n")
    with pytest.raises(PdefmError, match=r"study.yaml:16:.*did you mean 'rel_l2'"):
        load_study(study_file(tmp_path, text))


def test_the_machine_block_reaches_every_run_but_not_their_ids(tmp_path):
    from pdefm.study.spec import run_config

    plain = load_study(study_file(tmp_path))
    text = STUDY + "machine: {device: cpu, tf32: false}\n"
    study = load_study(study_file(tmp_path, text))
    assert [r.id for r in study.runs] == [r.id for r in plain.runs]
    assert study.machine == {"device": "cpu", "tf32": False}
    config = run_config(runs_by_kind(study, "pretrain")[0], tmp_path, machine=study.machine)
    assert config.device == "cpu" and config.tf32 is False


def test_the_machine_block_refuses_experiment_settings(tmp_path):
    text = STUDY + "machine: {devise: cpu}\n"
    with pytest.raises(PdefmError, match=r"study.yaml:16:.*unknown key 'devise'.*'device'"):
        load_study(study_file(tmp_path, text))
    text = STUDY + "machine: {bf16: true}\n"  # changes the numbers: a stage or grid key
    with pytest.raises(PdefmError, match=r"study.yaml:16:.*unknown key 'bf16' in machine"):
        load_study(study_file(tmp_path, text))


def test_run_ids_without_the_new_setting_are_unchanged():
    """grad_clip is left out of the id at its default: runs published before keep theirs."""
    config = RunConfig(data="d")
    resolved = config.resolved("hash")
    assert "grad_clip" not in resolved
    assert RunConfig.run_id(resolved) == RunConfig.run_id(
        {k: v for k, v in config.resolved("hash").items()}
    )
    clipped = dataclasses.replace(config, grad_clip=1.0).resolved("hash")
    assert clipped["grad_clip"] == 1.0 and RunConfig.run_id(clipped) != RunConfig.run_id(resolved)
    for machine in ("device", "compile", "tf32", "out", "progress", "run_name"):
        assert machine not in resolved


def test_grad_clip_from_the_api_is_checked_by_name(tmp_path):
    with pytest.raises(PdefmError, match="--grad-clip must be > 0"):
        finetune(tmp_path / "ckpt", tmp_path / "data", grad_clip=0.0, out=tmp_path / "runs")
    assert not (tmp_path / "runs").exists()


def test_grad_clip_bounds_the_gradient_norm_at_each_step():
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.Tanh(), torch.nn.Linear(16, 8))
    opt = torch.optim.AdamW(net.parameters(), lr=1e-3)
    norms = []

    def record(optimizer, args, kwargs):
        grads = [p.grad for g in optimizer.param_groups for p in g["params"] if p.grad is not None]
        norms.append(torch.linalg.vector_norm(torch.stack([g.norm() for g in grads])).item())

    opt.register_step_pre_hook(record)
    x, y = torch.randn(4, 8), 100 * torch.randn(4, 8)  # large targets: large gradients
    fit._step(net, opt, x, y, fit.StepRule())
    fit._step(net, opt, x, y, fit.StepRule(grad_clip=0.25))
    assert norms[0] > 10  # unclipped
    assert norms[1] == pytest.approx(0.25, rel=1e-5)
