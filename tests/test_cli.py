"""The `pdefm` command end to end: generate, inspect, train, evaluate, --help."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from pdefm.cli import build_parser, main

SMALL = [
    "--n-train",
    "64",
    "--n-val",
    "16",
    "--n-test",
    "16",
    "--resolution",
    "32",
    "--sigma",
    "0.0625",
    "--quiet",
]


def test_help_teaches_every_command(capsys):
    for command in ("generate", "inspect", "train", "evaluate"):
        with pytest.raises(SystemExit):
            build_parser().parse_args([command, "--help"])
        text = capsys.readouterr().out
        assert "usage: pdefm" in text and "--" in text
    with pytest.raises(SystemExit):
        build_parser().parse_args(["generate", "--help"])
    assert "examples:" in capsys.readouterr().out


def test_generate_train_evaluate(tmp_path, capsys):
    data = str(tmp_path / "d")
    assert main(["generate", "poisson", *SMALL, "--out", data]) == 0
    runs = str(tmp_path / "runs")
    args = [
        "train",
        data,
        "--model",
        "fno-micro",
        "--epochs",
        "3",
        "--lr",
        "1e-3",
        "3e-3",
        "--out",
        runs,
        "--quiet",
    ]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "test rel L2" in out and "checkpoint:" in out
    checkpoint = out.split("checkpoint: ")[1].split()[0]
    record = json.loads((tmp_path / "runs").glob("*/record.json").__next__().read_text())
    assert record["status"] == "completed" and record["selected_lr"] in (1e-3, 3e-3)
    assert main(args) == 0  # finished: returns the record at once
    assert main(["evaluate", checkpoint, data, "--out", runs]) == 0
    assert "test rel L2" in capsys.readouterr().out


def test_bad_train_input_is_one_line(tmp_path, capsys):
    assert main(["train", str(tmp_path / "nowhere"), "--quiet"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "not a pdefm dataset" in err[0]


def test_module_entry_point_runs():
    out = subprocess.run(
        [sys.executable, "-m", "pdefm.cli", "--version"], capture_output=True, text=True, check=True
    )
    assert out.stdout.startswith("pdefm ")


def test_killed_training_resumes_to_the_same_metrics(tmp_path):
    """SIGKILL a real `pdefm train` mid-run, rerun the same command, compare with a clean run."""
    import signal
    import time

    data = str(tmp_path / "d")
    assert main(["generate", "poisson", *SMALL, "--out", data]) == 0
    args = [
        "train",
        data,
        "--model",
        "fno-micro",
        "--epochs",
        "40",
        "--n-train",
        "32",
        "--batch-size",
        "8",
        "--quiet",
    ]
    cmd = [sys.executable, "-m", "pdefm.cli", *args]
    killed = tmp_path / "killed"
    proc = subprocess.Popen([*cmd, "--out", str(killed)])
    deadline = time.time() + 120
    while time.time() < deadline and not list(killed.glob("*/lr-*/state.safetensors")):
        time.sleep(0.05)
    time.sleep(0.3)  # a few more epochs
    proc.send_signal(signal.SIGKILL)
    assert proc.wait() == -signal.SIGKILL
    record = json.loads(next(killed.glob("*/record.json")).read_text())
    assert record["status"] == "running"  # really interrupted
    subprocess.run([*cmd, "--out", str(killed)], check=True)
    subprocess.run([*cmd, "--out", str(tmp_path / "clean")], check=True)
    resumed = json.loads(next(killed.glob("*/record.json")).read_text())
    clean = json.loads(next((tmp_path / "clean").glob("*/record.json")).read_text())
    assert resumed["id"] == clean["id"] and resumed["status"] == "completed"
    assert resumed["test"]["rel_l2"] == pytest.approx(clean["test"]["rel_l2"], rel=1e-5)
    assert [h["epoch"] for h in resumed["history"]] == [h["epoch"] for h in clean["history"]]
    assert resumed["history"][-1]["epoch"] == 40


@pytest.mark.parametrize(
    "argv,needle",
    [
        (["generate", "poisson", "--n-train", "abc"], "--n-train"),
        (["bogus"], "invalid choice"),
        (["study", "run"], "file"),
        (["train", "--lr"], "--lr"),
        (["train", "x", "--epochs", "3", "--steps", "4"], "not allowed with"),
    ],
)
def test_usage_errors_are_one_line(refused, argv, needle):
    refused(argv, needle, "--help")
