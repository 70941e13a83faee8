"""Ray executor end to end on a one-node Ray cluster on loopback (started and stopped here):
a worker killed mid-run, the driver interrupted, the study resumed; every run is recorded
once and the results equal the local executor's.

Not part of the default suite (``-m "not ray"`` in pyproject.toml): run it with
``pip install -e ".[test,ray]" && python -m pytest -m ray tests/test_ray.py``.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import torch
from safetensors import safe_open

pytest.importorskip("ray")

from pdefm.errors import PdefmError  # noqa: E402
from pdefm.study.executors import RayCluster, choose_executor  # noqa: E402
from pdefm.study.ray_executor import _run_lock, import_ray  # noqa: E402
from pdefm.study.runner import run_status, run_study  # noqa: E402
from pdefm.study.spec import load_study  # noqa: E402

pytestmark = pytest.mark.ray

# The pre-training stage is long enough (200 steps) to kill its worker and interrupt the
# driver while it trains; everything else is tiny.
STUDY = """\
name: tiny
resolution: 32
sigma: 0.0625
datasets:
  pre:  {family: poisson, range: [1, 5], n_train: 64, n_val: 16, n_test: 16}
  down: {family: poisson, range: [5, 10], n_train: 32, n_val: 16, n_test: 16, seed: 1}
pretrain:
  p: {data: pre, model: fno-micro, epochs: 200, lrs: [3e-3]}
downstream:
  tasks: [down]
  sizes: [4, 8]
  inits: [scratch, p]
  models: [fno-micro]
  lrs: [0.003]
  steps: 10
  zero_shot: true
"""

# Loopback only: Ray would otherwise replace 127.0.0.1 by the machine's network address.
# No token authentication on this private, loopback-only test cluster.
ENV = {
    **os.environ,
    "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0",
    "RAY_AUTH_MODE": "disabled",
    "RAY_USAGE_STATS_ENABLED": "0",
}


def wait_for(condition: Callable[[], bool], what: str, timeout: float = 120, driver=None) -> None:
    """Poll ``condition``; fail after ``timeout`` s, or at once if ``driver`` has exited."""
    deadline = time.time() + timeout
    while not condition():
        if driver is not None and driver.poll() is not None:
            raise AssertionError(f"the driver exited ({driver.stderr.read().decode()})")
        if time.time() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


@pytest.fixture(scope="module")
def cluster() -> Iterator[tuple[str, int]]:
    """A one-node Ray cluster on 127.0.0.1 with 2 CPUs: (address, pid of `ray start`)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    temp = tempfile.mkdtemp(prefix="pdefm-ray-")  # short: Ray's socket paths have a limit
    log = Path(temp) / "head.log"
    cmd = [sys.executable, "-m", "ray.scripts.scripts", "start", "--head", "--block"]
    cmd += [f"--port={port}", "--node-ip-address=127.0.0.1", "--num-cpus=2", "--num-gpus=0"]
    cmd += ["--include-dashboard=false", "--disable-usage-stats", f"--temp-dir={temp}"]
    with log.open("w") as out:
        head = subprocess.Popen(cmd, env=ENV, stdout=out, stderr=subprocess.STDOUT)
    try:
        wait_for(lambda: "Ray runtime started" in log.read_text(), "the Ray head", 90)
        yield f"127.0.0.1:{port}", head.pid
    finally:
        head.terminate()  # `ray start --block` stops every process it started
        head.wait(timeout=60)
        shutil.rmtree(temp, ignore_errors=True)


def task_pid(name: str, head_pid: int) -> int | None:
    """The pid of the Ray worker running the task called ``name`` on our cluster, if any."""
    for proc in Path("/proc").iterdir():
        try:
            title = (proc / "cmdline").read_bytes().split(b"\0")[0].decode()
        except (OSError, ValueError):
            continue
        if title == f"ray::{name}" and head_pid in ancestors(int(proc.name)):
            return int(proc.name)
    return None


def ancestors(pid: int) -> list[int]:
    out = []
    while pid > 1:
        try:
            stat = Path(f"/proc/{pid}/stat").read_text()
        except OSError:
            break
        pid = int(stat.rsplit(")", 1)[1].split()[1])
        out.append(pid)
    return out


def saved_epoch(state: Path) -> int:
    """The epoch a training state file was saved at."""
    with safe_open(str(state), framework="pt") as fh:
        return json.loads(fh.metadata()["info"])["epoch"]


def completed_records(root: Path) -> dict[Path, bytes]:
    return {
        p: p.read_bytes()
        for p in root.glob("runs/*/record.json")
        if json.loads(p.read_text()).get("status") == "completed"
    }


def test_ray_study_survives_a_killed_worker_and_an_interrupt(tmp_path, cluster):
    address, head_pid = cluster
    spec = tmp_path / "study.yaml"
    spec.write_text(STUDY)
    study = load_study(spec)
    stage = next(r for r in study.runs if r.kind == "pretrain")
    task = f"pdefm-pretrain-{stage.id}"
    root = tmp_path / "ray"
    state = root / "runs" / stage.id / "lr-0.003" / "state.safetensors"
    cmd = [sys.executable, "-m", "pdefm.cli", "study", "run", str(spec), "--out", str(root)]
    cmd += ["--quiet", "--executor", "ray", "--address", address]
    driver = subprocess.Popen(
        cmd,
        env=ENV,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        # A shell without job control starts background jobs with SIGINT ignored, and Python
        # keeps an ignored SIGINT: restore the default so the Ctrl-C below reaches the driver.
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    try:
        # 1. Kill the worker training the stage once it has saved a state file.
        wait_for(state.is_file, "the pre-training stage's first state file", driver=driver)
        worker = task_pid(task, head_pid)
        assert worker is not None
        os.kill(worker, signal.SIGKILL)
        wait_for(lambda: not Path(f"/proc/{worker}").exists(), "the killed worker to go")
        assert run_status(stage, root) == "partial"
        saved, killed_at = state.stat().st_ino, saved_epoch(state)
        # 2. Ray retries the task in a new worker, which resumes from the state file.
        wait_for(lambda: state.stat().st_ino != saved, "the retried task to save", driver=driver)
        retry = task_pid(task, head_pid)
        assert retry is not None and retry != worker
        assert saved_epoch(state) > killed_at  # went on from the state file, not from scratch
        # 3. Ctrl-C the driver while the stage still trains.
        driver.send_signal(signal.SIGINT)
        _, err = driver.communicate(timeout=60)
    finally:
        driver.kill()
    assert driver.returncode == 130, err.decode()
    assert "rerun the same command to resume" in err.decode()
    assert run_status(stage, root) == "partial"
    wait_for(lambda: task_pid(task, head_pid) is None, "the interrupted job's worker to go")

    # 4. Rerunning finishes the study; each run has one completed record.
    subprocess.run(cmd, env=ENV, check=True, capture_output=True, timeout=300)
    assert all(run_status(r, root) == "done" for r in study.runs)
    records = completed_records(root)
    assert len(records) == len(list(root.glob("runs/*/record.json")))
    assert len(records) == sum(r.kind != "data" for r in study.runs) == 6
    history = json.loads((root / "runs" / stage.id / "record.json").read_text())["history"]
    epochs = [h["epoch"] for h in history]
    assert epochs == sorted(set(epochs)) and epochs[-1] == 200  # each epoch recorded once

    # 5. The same numbers as the local executor, killed and interrupted or not.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as each Ray task (1 CPU); two threads crawl on a busy 2-core box
    try:
        local = run_study(spec, tmp_path / "local", progress=False)
    finally:
        torch.set_num_threads(threads)
    for path, content in records.items():
        theirs = json.loads((local / "runs" / path.parent.name / "record.json").read_text())
        ours = json.loads(content)
        assert ours["test"] == pytest.approx(theirs["test"], rel=1e-5), path.parent.name
        assert ours["val"] == pytest.approx(theirs["val"], rel=1e-5), path.parent.name

    # 6. Rerunning a finished study does nothing.
    again = subprocess.run(cmd, env=ENV, check=True, capture_output=True, text=True, timeout=120)
    assert "study done" in again.stdout and "test rel L2" not in again.stderr
    assert completed_records(root) == records


def test_ray_executor_options_are_checked(tmp_path):
    spec = tmp_path / "study.yaml"
    spec.write_text(STUDY)
    with pytest.raises(PdefmError, match="--workers is for the local executor"):
        choose_executor("ray", workers=2)
    with pytest.raises(PdefmError, match="need --executor ray"):
        choose_executor("local", address="127.0.0.1:1")
    with pytest.raises(PdefmError, match="unknown executor 'dask'"):
        choose_executor("dask")
    with pytest.raises(PdefmError, match="--ray-cpus-per-run must be"):
        run_study(spec, tmp_path / "a", executor=RayCluster(cpus_per_run=-1.0))
    with pytest.raises(PdefmError, match="executor must be a LocalPool or RayCluster"):
        run_study(spec, tmp_path / "a", executor="ray")
    assert not (tmp_path / "a").exists()


def test_missing_ray_is_a_one_line_error_naming_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # import ray -> ImportError
    with pytest.raises(PdefmError, match=r'pip install "pdefm\[ray\]"'):
        import_ray()


def test_a_second_task_for_a_run_waits_for_the_first(tmp_path):
    lock = tmp_path / ".locks" / "run"
    entered = threading.Event()

    def second() -> None:
        with _run_lock(lock):
            entered.set()

    with _run_lock(lock):
        thread = threading.Thread(target=second)
        thread.start()
        assert not entered.wait(0.5)  # the first still holds the run
    assert entered.wait(10)
    thread.join()
