"""Data-parallel training under torchrun: 2 CPU processes (gloo) against 1 process.

One config (fno-micro, 76 examples in global batches of 15: the shares are 7/8 and, for the
last batch of 1, empty/1) is trained three ways: in this process, by ``torchrun
--nproc_per_node 2``, and by torchrun again after a kill mid-training. A small wrapper
(``WORKER``) runs ``pdefm.cli.main`` under a Python audit hook that logs every file write of its
rank inside the runs directory, to show that rank 1 writes nothing.
"""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors import safe_open

from pdefm.data.generate import generate_dataset
from pdefm.data.io import LOCK_NAME
from pdefm.data.spec import GenerationSpec
from pdefm.pdes import GaussianLatticeSource
from pdefm.train import fit, loop
from pdefm.train.config import RunConfig

pytestmark = pytest.mark.slow

EPOCHS = 10
CONFIG = dict(model="fno-micro", n_train=76, batch_size=15, lrs=(2e-3,), epochs=EPOCHS, seed=3)
ARGS = ["--model", "fno-micro", "--n-train", "76", "--batch-size", "15", "--lr", "2e-3"]
ARGS += ["--epochs", str(EPOCHS), "--seed", "3", "--device", "cpu", "--quiet"]
TIMEOUT = 180  # seconds for one torchrun launch (two interpreters importing torch, on 2 cores)
GLOO_TEARDOWN_ABORT = "terminate called without an active exception"

WORKER = """
import json, os, sys

root, log, argv = os.path.abspath(sys.argv[1]), sys.argv[2], sys.argv[3:]
writes = []
RENAMES = ("os.rename", "shutil.copytree")
OTHERS = ("os.mkdir", "os.remove", "os.rmdir", "shutil.rmtree")
WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_CREAT


def hook(event, args):
    if event == "open":
        path, mode, flags = args
        writing = bool(mode and set(mode) & set("wax+")) or bool((flags or 0) & WRITE_FLAGS)
    elif event in RENAMES or event in OTHERS:
        path, writing = args[1] if event in RENAMES else args[0], True
    else:
        return
    if writing and isinstance(path, (str, bytes, os.PathLike)):
        path = os.path.abspath(os.fsdecode(path))
        if path.startswith(root):
            writes.append([event, path])


sys.addaudithook(hook)
from pdefm.cli import main

try:
    code = main(argv)
finally:
    with open(log.format(rank=os.environ["RANK"]), "w") as fh:
        json.dump(writes, fh)
sys.exit(code)
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def torchrun(*args: str) -> list[str]:
    """The command line of a 2-process torchrun on this machine (gloo, localhost)."""
    return [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nproc_per_node",
        "2",
        "--master_addr",
        "127.0.0.1",
        "--master_port",
        str(free_port()),
        *args,
    ]


def only_record(out: Path) -> dict:
    (path,) = out.glob("*/record.json")
    return json.loads(path.read_text())


def files_under(out: Path) -> set[str]:
    return {str(p.relative_to(out)) for p in out.rglob("*") if p.is_file()}


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("ddp-data")
    spec = GenerationSpec(
        "poisson", 1, 5, 80, 32, 32, resolution=32, source=GaussianLatticeSource(sigma=1 / 16)
    )
    generate_dataset(spec, root, progress=False)
    return root


@pytest.fixture(scope="module")
def single(data, tmp_path_factory) -> Path:
    """The 1-process run (in this process, one thread: as each torchrun worker)."""
    out = tmp_path_factory.mktemp("single")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        record = loop.train(
            RunConfig(data=str(data), out=str(out), device="cpu", progress=False, **CONFIG)
        )
    finally:
        torch.set_num_threads(threads)
    assert record["status"] == "completed" and record["world_size"] == 1
    return out


@pytest.fixture(scope="module")
def double(data, tmp_path_factory) -> Path:
    """The 2-process run, every file write of each rank inside ``out`` logged."""
    base = tmp_path_factory.mktemp("double")
    out, worker = base / "runs", base / "worker.py"
    worker.write_text(WORKER)
    log = str(base / "writes-{rank}.json")
    cmd = torchrun(str(worker), str(out), log, "train", str(data), "--out", str(out), *ARGS)
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=TIMEOUT)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.count("test rel L2") == 1, done.stdout  # rank 0 alone reports
    return out


def assert_same_metrics(a: dict, b: dict, rel: float) -> None:
    for split in ("val", "test"):
        for key in ("rel_l2", "mse"):
            assert b[split][key] == pytest.approx(a[split][key], rel=rel), (split, key)
    assert b["test"]["residual"] == pytest.approx(a["test"]["residual"], rel=rel)
    assert [h["epoch"] for h in b["history"]] == [h["epoch"] for h in a["history"]]
    for ha, hb in zip(a["history"], b["history"], strict=True):
        assert hb["train_loss"] == pytest.approx(ha["train_loss"], rel=rel)
        assert hb["val_rel_l2"] == pytest.approx(ha["val_rel_l2"], rel=rel)


def test_two_processes_match_one_process_with_the_same_global_batch(single, double):
    one, two = only_record(single), only_record(double)
    assert two["status"] == "completed" and two["world_size"] == 2
    assert two["id"] == one["id"]  # the world size is where a run goes, not what it computes
    assert len(two["history"]) == EPOCHS
    assert two["history"][-1]["val_rel_l2"] < two["history"][0]["val_rel_l2"]  # it learned
    assert_same_metrics(one, two, rel=1e-4)  # float summation order differs, nothing else


def test_only_rank_0_writes(single, double):
    logs = {r: json.loads((double.parent / f"writes-{r}.json").read_text()) for r in "01"}
    assert logs["1"] == [], logs["1"][:5]
    written = {Path(path).name for _, path in logs["0"]}
    assert {"record.json", "state.safetensors", "card.json"} <= written
    files = files_under(double)
    assert files == files_under(single)  # the same run directory, nothing extra
    hidden = [f for f in files if Path(f).name.startswith(".") and Path(f).name != LOCK_NAME]
    assert not hidden, files  # no temporaries (the run folder's lock file stays)
    assert sum(Path(f).name == "record.json" for f in files) == 1


def test_a_killed_distributed_run_resumes_to_the_same_result(data, double, tmp_path):
    out = tmp_path / "runs"
    cmd = torchrun("-m", "pdefm.cli", "train", str(data), "--out", str(out), *ARGS)
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        state = wait_for(lambda: next(out.glob("*/lr-*/state.safetensors"), None), proc)
        proc.send_signal(signal.SIGTERM)  # as a scheduler does: torchrun stops its workers
        proc.wait(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert only_record(out)["status"] == "running"
    with safe_open(str(state), framework="pt") as fh:
        stopped_at = json.loads(fh.metadata()["info"])["epoch"]
    assert 1 <= stopped_at < EPOCHS, stopped_at  # killed mid-training, after a saved state
    again = subprocess.run(cmd, capture_output=True, text=True, timeout=TIMEOUT)
    if again.returncode != 0 and GLOO_TEARDOWN_ABORT in again.stderr:
        # gloo's threads, on a loaded machine, sometimes abort a rank as the process group is
        # torn down (a torch race, not pdefm's); that is one more interruption, and the run
        # must resume from it too
        again = subprocess.run(cmd, capture_output=True, text=True, timeout=TIMEOUT)
    assert again.returncode == 0, again.stderr[-3000:]
    assert_same_metrics(only_record(double), only_record(out), rel=1e-6)


def test_every_rank_leaves_at_once_when_the_run_is_busy(data, single, tmp_path):
    """Rank 0 is refused the run lock (another process holds it): no rank may wait for the
    process group's timeout."""
    from pdefm.data.io import directory_lock

    out = tmp_path / "runs"
    run_dir = out / only_record(single)["id"]
    run_dir.mkdir(parents=True)
    cmd = torchrun("-m", "pdefm.cli", "train", str(data), "--out", str(out), *ARGS)
    with directory_lock(run_dir, "held by this test"):
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=TIMEOUT)
    assert done.returncode != 0
    assert "is being trained by another process" in done.stderr, done.stderr[-2000:]
    assert "rank 0 could not take run" in done.stderr, done.stderr[-2000:]
    assert files_under(out) == {f"{run_dir.name}/{LOCK_NAME}"}  # nothing written


def wait_for(find, proc: subprocess.Popen, timeout: float = TIMEOUT):
    """Poll ``find()`` until it returns something; fail if ``proc`` ends first."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        found = find()
        if found is not None:
            return found
        assert proc.poll() is None, "torchrun ended before a training state appeared"
        time.sleep(0.02)
    raise AssertionError(f"no training state after {timeout} s")


def test_shards_tile_every_global_batch():
    from pdefm.train import distributed

    assert distributed.world_size() == 1 and distributed.is_main()
    positions = torch.arange(7)
    assert torch.equal(distributed.shard(positions), positions)  # one process: everything
    for world in (2, 3, 8):
        shares = [distributed.shard(positions, r, world) for r in range(world)]
        assert torch.equal(torch.cat(shares), positions)
        assert max(map(len, shares)) - min(map(len, shares)) <= 1


# -- the GPU-minded parts of the loop, checked on the CPU ---------------------------------------
def test_deferred_loss_check_finds_the_first_bad_step():
    losses = fit._Losses(every=4)
    for value in (1.0, 0.5, 0.4):
        losses.add(torch.tensor(value))
    assert losses.values == []  # nothing read yet: no host-device sync per step on a GPU
    with pytest.raises(fit.DivergedError, match="at step 4 of the epoch"):
        losses.add(torch.tensor(float("nan")))  # the 4th step reads and checks all four
    growing = fit._Losses(every=100)
    for value in (1.0, 2.0, 2e4, 3e4):
        growing.add(torch.tensor(value))
    with pytest.raises(fit.DivergedError, match="grew from 1 to 2e\\+04"):
        growing.flush()


def test_streamed_batches_train_as_the_cached_ones(data, single, tmp_path, monkeypatch):
    from pdefm.train import batches

    monkeypatch.setattr(batches, "MEMORY_LIMIT", 0)  # read from the HDF5 file batch by batch
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        config = RunConfig(data=str(data), out=str(tmp_path), progress=False, **CONFIG)
        streamed = loop.train(config)
    finally:
        torch.set_num_threads(threads)
    assert_same_metrics(only_record(single), streamed, rel=1e-6)
