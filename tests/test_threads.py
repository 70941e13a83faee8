"""The CPU thread policy and portability: threads from free cores, passive waiting, no fcntl."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import time

import pytest

from pdefm import threads
from pdefm.errors import PdefmError


def _fake_times(monkeypatch, busy_fraction: dict[str, float]) -> None:
    """Make /proc/stat report each cpu busy for ``busy_fraction`` of a 100-tick sample."""
    calls = iter([0, 1])

    def times():
        k = next(calls)
        return {cpu: (int(100 * f * k), 100 * k) for cpu, f in busy_fraction.items()}

    monkeypatch.setattr(threads, "_cpu_times", times)
    monkeypatch.setattr(threads.os, "sched_getaffinity", lambda _pid: {0, 1}, raising=False)


def test_busy_competitor_takes_a_core(monkeypatch):
    _fake_times(monkeypatch, {"cpu0": 0.97, "cpu1": 0.05})
    assert threads.free_cores(sample_seconds=0) == 1


def test_quiet_machine_gives_every_core(monkeypatch):
    _fake_times(monkeypatch, {"cpu0": 0.02, "cpu1": 0.1})
    assert threads.free_cores(sample_seconds=0) == 2


def test_fully_busy_machine_still_gives_one_thread(monkeypatch):
    _fake_times(monkeypatch, {"cpu0": 1.0, "cpu1": 1.0})
    assert threads.free_cores(sample_seconds=0) == 1


def test_workers_share_the_free_cores(monkeypatch):
    for var in ("PDEFM_THREADS", "OMP_NUM_THREADS"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setattr(threads, "free_cores", lambda *a: 4)
    assert threads.choose_threads(workers=1) == 4
    assert threads.choose_threads(workers=2) == 2
    assert threads.choose_threads(workers=8) == 1
    assert threads.choose_threads(3, workers=2) == 3  # explicit: per process


def test_environment_overrides_in_order(monkeypatch):
    monkeypatch.setattr(threads, "free_cores", lambda *a: 4)
    monkeypatch.setenv("OMP_NUM_THREADS", "3")
    monkeypatch.delenv("PDEFM_THREADS", raising=False)
    assert threads.choose_threads() == 3
    monkeypatch.setenv("PDEFM_THREADS", "1")
    assert threads.choose_threads() == 1


@pytest.mark.parametrize("value", ["0", "-2", "two", "1.5"])
def test_bad_thread_environment_is_one_line(monkeypatch, value):
    monkeypatch.setenv("PDEFM_THREADS", value)
    with pytest.raises(PdefmError, match="PDEFM_THREADS"):
        threads.choose_threads()


@pytest.mark.parametrize("argv", [["train", "x", "--threads", "0"], ["demo", "--threads", "-1"]])
def test_bad_threads_option_is_refused(refused, tmp_path, argv):
    refused(argv + (["--out", str(tmp_path / "o")]), "--threads")


def test_user_wait_policy_is_kept(monkeypatch):
    monkeypatch.setenv("OMP_WAIT_POLICY", "ACTIVE")
    threads.prepare_environment()
    assert threads.os.environ["OMP_WAIT_POLICY"] == "ACTIVE"
    monkeypatch.delenv("OMP_WAIT_POLICY")
    threads.prepare_environment()
    assert threads.os.environ["OMP_WAIT_POLICY"] == "PASSIVE"


def test_a_real_busy_process_is_seen():
    if threads.busy_cores(0.01) is None:
        pytest.skip("no /proc/stat on this platform")
    spin = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        time.sleep(0.3)  # let it get scheduled
        assert threads.busy_cores(0.5) >= 0.6
    finally:
        spin.kill()
        spin.wait()


def test_pdefm_imports_and_locks_without_fcntl(tmp_path):
    """Windows has no fcntl: importing the package, the API and the runners must not need it,
    and directory locks must still refuse a second holder."""
    code = textwrap.dedent(
        f"""
        import sys
        sys.modules["fcntl"] = None  # import fcntl now raises ImportError
        import pdefm, pdefm.api, pdefm.data.generate, pdefm.study.runner, pdefm.cli
        from pathlib import Path
        from pdefm.data.io import directory_lock
        from pdefm.errors import PdefmError
        root = Path({str(tmp_path)!r})
        with directory_lock(root, "busy"):
            try:
                with directory_lock(root, "busy"):
                    raise SystemExit("second holder was let in")
            except PdefmError:
                pass
        print("ok")
        """
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr


def test_second_process_is_refused_the_lock(tmp_path):
    from pdefm.data.io import directory_lock

    holder = (
        f"from pdefm.data.io import directory_lock\nfrom pathlib import Path\n"
        f"import time\nwith directory_lock(Path({str(tmp_path)!r}), 'busy'):\n"
        f"    print('held', flush=True); time.sleep(30)\n"
    )
    proc = subprocess.Popen([sys.executable, "-c", holder], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "held"
        with pytest.raises(PdefmError, match="busy"), directory_lock(tmp_path, "busy"):
            pass
    finally:
        proc.kill()
        proc.wait()
    with directory_lock(tmp_path, "busy"):  # released when its holder died
        pass
