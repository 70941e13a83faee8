"""What a run cost, on its record: wall and core-seconds summed over every process that worked
on it (a killed and resumed run adds its parts), the examples stepped on and scored, the
device and threads."""

from __future__ import annotations

import pytest
import torch

from pdefm.data.generate import generate_dataset
from pdefm.data.spec import GenerationSpec
from pdefm.models.flops import eval_flops, train_flops_per_sample
from pdefm.pdes import GaussianLatticeSource
from pdefm.train import fit, loop
from pdefm.train.checkpoint import load_checkpoint
from pdefm.train.config import RunConfig

KW = dict(model="fno-micro", n_train=64, lrs=(2e-3,), epochs=24, batch_size=8, device="cpu",
          progress=False)  # fmt: skip


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> str:
    root = tmp_path_factory.mktemp("compute") / "data"
    spec = GenerationSpec(
        "poisson", 1, 5, 64, 16, 16, resolution=32, seed=2,
        source=GaussianLatticeSource(sigma=1 / 8), block_size=32,
    )  # fmt: skip
    generate_dataset(spec, root, progress=False)
    return str(root)


def train(data: str, out, **kw):
    return loop.train(RunConfig(data=data, out=str(out), **{**KW, **kw}))


def test_a_record_states_what_the_run_cost(data, tmp_path):
    record = train(data, tmp_path, epochs=4)
    c = record["compute"]
    assert c["segments"] == 1 and c["device"] == "cpu" and c["threads"] >= 1
    assert c["samples"] == 4 * 64  # every epoch steps on each of the 64 examples once
    assert 0 < c["wall_s"] == record["wall_time_s"] and c["cpu_s"] > 0
    per_lr = record["per_lr"]["0.002"]
    assert per_lr["samples"] == c["samples"] and 0 < per_lr["wall_s"] <= c["wall_s"]
    assert c["evaluated"] == 4 * 16 + 16 + 16  # and the final validation and test passes


def test_the_operation_count_is_the_analytic_count_times_the_examples(data, tmp_path):
    record = train(data, tmp_path, epochs=3)
    model, _, _ = load_checkpoint(record["checkpoint"])
    step = train_flops_per_sample(model.arch, 32, "all", batch=8)
    forward = eval_flops(model.arch, 32)
    c = record["compute"]
    assert c["flops"] == step * 3 * 64 + forward * (3 * 16 + 16 + 16)
    assert record["per_lr"]["0.002"]["flops"] == step * 3 * 64 + forward * 3 * 16


def test_a_killed_and_resumed_run_sums_its_processes(data, tmp_path, monkeypatch):
    """Interrupted half-way, then resumed: the record adds both processes' time, which comes
    within 20% of an uninterrupted run's (the interrupted part lost at most one epoch)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # one thread: CPU time is then not inflated by threads waiting
    try:
        _compare_resumed(data, tmp_path, monkeypatch)
    finally:
        torch.set_num_threads(threads)


def _compare_resumed(data, tmp_path, monkeypatch) -> None:
    full = train(data, tmp_path / "full")
    real_epoch, calls = fit._epoch, []

    def interrupted(*args, **kwargs):
        calls.append(1)
        if len(calls) == 13:
            raise KeyboardInterrupt  # as a kill: no record is written at the end
        return real_epoch(*args, **kwargs)

    monkeypatch.setattr(fit, "_epoch", interrupted)
    with pytest.raises(KeyboardInterrupt):
        train(data, tmp_path / "resumed")
    monkeypatch.setattr(fit, "_epoch", real_epoch)
    resumed = train(data, tmp_path / "resumed")
    a, b = full["compute"], resumed["compute"]
    assert b["segments"] == 2 and a["segments"] == 1
    assert b["samples"] == a["samples"] == 24 * 64
    assert resumed["per_lr"]["0.002"]["segments"] == 2
    assert b["cpu_s"] == pytest.approx(a["cpu_s"], rel=0.2)
    assert b["wall_s"] == pytest.approx(a["wall_s"], rel=0.2)
