"""Bad input to `pdefm train`, `pdefm evaluate` and the Python API: every refusal is one line
that names the option or file, exits 2 and leaves every file as it was (no run folder, no
record); damaged checkpoints are refused field by field; concurrent identical runs never
crash; run ids follow a checkpoint's content, not its path."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

import pdefm
from pdefm.data.dataset import PDEDataset
from pdefm.data.io import directory_lock
from pdefm.errors import PdefmError
from pdefm.models import create_model
from pdefm.train import loop
from pdefm.train.config import RunConfig

FAST = ["--model", "fno-micro", "--steps", "2", "--quiet"]


def snapshot(root: Path) -> dict:
    """Relative path -> sha256 (None for folders) of everything under ``root``."""
    if not root.exists():
        return {}
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        if p.is_file()
        else None
        for p in sorted(root.rglob("*"))
    }


@pytest.fixture(scope="module")
def ckpt(datasets, tmp_path_factory) -> Path:
    """A tiny fno-micro checkpoint trained for two steps on the 64x64 Poisson set."""
    out = tmp_path_factory.mktemp("ckpt-runs")
    config = RunConfig(
        data=str(datasets["poisson"][1]),
        model="fno-micro",
        epochs=None,
        steps=2,
        out=str(out),
        progress=False,
    )
    record = loop.train(config)
    assert record["status"] == "completed"
    return Path(record["checkpoint"])


@pytest.fixture
def ctx(datasets, ckpt, tmp_path):
    """Paths for a refusal: data sets, the checkpoint, a runs folder; what to watch."""

    class Ctx:
        poisson = datasets["poisson"][1]
        helmholtz = datasets["helmholtz"][1]
        runs = tmp_path / "runs"
        checkpoint = ckpt
        watch = [tmp_path, datasets["poisson"][1], datasets["helmholtz"][1], ckpt]

    return Ctx


# -- train: options --------------------------------------------------------------------------------
FLAGS = {
    "weight-decay nan": (["--weight-decay", "nan"], ("--weight-decay", "finite")),
    "weight-decay inf": (["--weight-decay", "inf"], ("--weight-decay", "finite")),
    "weight-decay negative": (["--weight-decay", "-0.1"], ("--weight-decay", ">= 0")),
    "lr zero": (["--lr", "0"], ("--lr", "> 0")),
    "lr negative": (["--lr", "-0.001"], ("--lr", "> 0")),
    "lr nan": (["--lr", "nan"], ("--lr", "finite")),
    "lr inf": (["--lr", "1e-3", "inf"], ("--lr", "finite")),
    "lr repeated": (["--lr", "1e-3", "0.001"], ("--lr 0.001", "more than once")),
    "epochs zero": (["--epochs", "0"], ("--epochs", ">= 1")),
    "epochs negative": (["--epochs", "-5"], ("--epochs", ">= 1")),
    "steps negative": (["--steps", "-1"], ("--steps", ">= 1")),
    "steps zero": (["--steps", "0"], ("--steps", ">= 1")),
    "patience zero": (["--epochs", "5", "--patience", "0"], ("--patience", ">= 1")),
    "patience with steps": (["--patience", "3"], ("--patience", "give --epochs CAP")),
    "lr-extend negative": (["--lr-extend", "-1"], ("--lr-extend", ">= 0")),
    "lr-extend huge": (["--lr-extend", "100"], ("--lr-extend", "<= 8")),
    "batch-size zero": (["--batch-size", "0"], ("--batch-size", ">= 1")),
    "batch-size negative": (["--batch-size", "-3"], ("--batch-size", ">= 1")),
    "n-train zero": (["--n-train", "0"], ("--n-train", ">= 1")),
    "n-train negative": (["--n-train", "-1"], ("--n-train", ">= 1")),
    "n-train beyond the split": (["--n-train", "1000"], ("subset of 1000", "split of 48")),
    "subset-seed negative": (["--subset-seed", "-1"], ("--subset-seed", ">= 0")),
    "seed negative": (["--seed", "-2"], ("--seed", ">= 0")),
    "seed too large": (["--seed", str(2**64)], ("--seed", "<=")),
    "lora-rank zero": (["--lora-rank", "0"], ("--lora-rank", ">= 1")),
    "bad mode": (["--mode", "sideways"], ("--mode", "zero-shot")),
    "mode head from scratch": (["--mode", "head"], ("adapts a pre-trained model", "--init")),
    "mode lora from scratch": (["--mode", "lora"], ("adapts a pre-trained model",)),
    "unknown model": (["--model", "fno-huge"], ("unknown model preset 'fno-huge'", "fno-tiny")),
    "device tpu": (["--device", "tpu"], ("--device", "cuda:N")),
    "device meta": (["--device", "meta"], ("--device",)),
    "device cuda:99": (["--device", "cuda:99"], ("--device cuda:99",)),
}


@pytest.mark.parametrize("extra,needles", FLAGS.values(), ids=list(FLAGS))
def test_train_option_refused(refused, ctx, extra, needles):
    argv = ["train", ctx.poisson, *FAST, *extra, "--out", ctx.runs]
    if "--epochs" in extra:  # --steps and --epochs are exclusive
        argv.remove("--steps")
        argv.remove("2")
    refused(argv, *needles, watch=ctx.watch)


def test_out_that_is_a_file_is_refused(refused, ctx, tmp_path):
    (tmp_path / "runs").write_text("not a folder")
    refused(["train", ctx.poisson, *FAST, "--out", tmp_path / "runs"], "--out", "not a folder")
    refused(["train", ctx.poisson, *FAST, "--out", tmp_path / "runs" / "x"], "is a file")


@pytest.mark.parametrize("kind", ["missing", "file", "empty folder"])
def test_train_on_no_dataset_is_refused(refused, ctx, tmp_path, kind):
    data = tmp_path / "data"
    if kind == "file":
        data.write_text("x")
    elif kind == "empty folder":
        data.mkdir()
    refused(["train", data, *FAST, "--out", ctx.runs], str(data), "card.json")


def test_training_memory_that_cannot_fit_is_refused(refused, ctx, monkeypatch):
    monkeypatch.setattr("pdefm.checks.available_memory", lambda: 1 << 20)
    refused(
        ["train", ctx.poisson, *FAST, "--model", "fno-tiny", "--out", ctx.runs],
        "training fno-tiny",
        "needs about",
        "1.0 MiB",
        watch=ctx.watch,
    )


# -- train / evaluate: checkpoints ----------------------------------------------------------------
def _card(root: Path) -> dict:
    return json.loads((root / "card.json").read_text())


def _edit_card(**changes):
    def damage(root: Path) -> None:
        card = _card(root)
        for path, value in changes.items():
            *parents, last = path.split(".")
            target = card
            for key in parents:
                target = target[key]
            if value is _DELETE:
                del target[last]
            else:
                target[last] = value
        (root / "card.json").write_text(json.dumps(card))
        (root / "config.json").unlink()

    return damage


_DELETE = object()


def _weights(edit):
    def damage(root: Path) -> None:
        path = root / "model.safetensors"
        state = load_file(str(path))
        save_file(edit(state), str(path))

    return damage


def _nan_weights(state):
    key = sorted(state)[0]
    state[key] = torch.full_like(state[key], float("nan"))
    return state


def _other_width(state):
    return {
        k: v.contiguous() for k, v in create_model("fno-micro", 4, 1, width=12).state_dict().items()
    }


def _truncate(root: Path) -> None:
    path = root / "model.safetensors"
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def _only_config(edit):
    def damage(root: Path) -> None:
        (root / "card.json").unlink()
        config = json.loads((root / "config.json").read_text())
        edit(config)
        (root / "config.json").write_text(json.dumps(config))

    return damage


DAMAGE = {
    "card is a list": (lambda r: (r / "card.json").write_text("[1, 2]"), ("card.json", "format")),
    "card not JSON": (lambda r: (r / "card.json").write_text("{"), ("card.json", "not valid JSON")),
    "no card, no config": (
        lambda r: [(r / n).unlink() for n in ("card.json", "config.json")],
        ("not a pdefm checkpoint", "no card.json or config.json"),
    ),
    "arch width 10^6": (
        _edit_card(**{"arch.width": 10**6}),
        ("card.json", "width 1000000", "needs about"),
    ),
    "arch width text": (
        _edit_card(**{"arch.width": "16"}),
        ("arch.width", "whole number", "damaged"),
    ),
    "arch width zero": (_edit_card(**{"arch.width": 0}), ("arch.width", ">= 1")),
    "arch without in_channels": (
        _edit_card(**{"arch.in_channels": _DELETE}),
        ("arch.in_channels",),
    ),
    "arch name unknown": (
        _edit_card(**{"arch.name": "resnet"}),
        ("arch.name 'resnet'", "fno-tiny"),
    ),
    "arch unknown option": (_edit_card(**{"arch.depth": 3}), ("arch.depth is not an option",)),
    "arch not an object": (_edit_card(arch=[1]), ("arch must be an object",)),
    "channel count": (
        _edit_card(input_channels=["source", "diffusion_xx"]),
        ("input_channels names 2 channels but arch.in_channels is 4",),
    ),
    "channel names": (_edit_card(input_channels="source"), ("input_channels must be a list",)),
    "normalisation garbled": (_edit_card(normalisation="x"), ("card.json: normalisation",)),
    "normalisation nan": (
        _edit_card(**{"normalisation.families.poisson.source_norm_median": float("nan")}),
        ("source_norm_median", "finite"),
    ),
    "datasets garbled": (_edit_card(datasets={"a": 1}), ("datasets must be a list",)),
    "weights missing": (
        lambda r: (r / "model.safetensors").unlink(),
        ("model.safetensors is missing",),
    ),
    "weights truncated": (_truncate, ("model.safetensors is corrupt or truncated",)),
    "weights garbage": (
        lambda r: (r / "model.safetensors").write_bytes(b"\0" * 64),
        ("corrupt or truncated",),
    ),
    "weights of another width": (_weights(_other_width), ("has shape", "different models")),
    "weights NaN": (_weights(_nan_weights), ("NaN or infinite",)),
    "config only, arch_args garbled": (
        _only_config(lambda c: c.update(arch_args=[1])),
        ("config.json", "arch_args"),
    ),
    "config only, wrong format": (
        _only_config(lambda c: c.update(format="other")),
        ("config.json", "not a pdefm checkpoint description"),
    ),
}


@pytest.fixture
def damaged(ckpt, tmp_path):
    def make(damage) -> Path:
        root = tmp_path / "ckpt"
        shutil.copytree(ckpt, root)
        damage(root)
        return root

    return make


@pytest.mark.parametrize("damage,needles", DAMAGE.values(), ids=list(DAMAGE))
def test_train_from_a_damaged_checkpoint_is_refused(refused, ctx, damaged, damage, needles):
    root = damaged(damage)
    refused(
        ["train", ctx.poisson, "--init", root, *FAST, "--out", ctx.runs], *needles, watch=ctx.watch
    )


@pytest.mark.parametrize(
    "name", ["card is a list", "arch width 10^6", "weights truncated", "weights NaN"]
)
def test_evaluate_a_damaged_checkpoint_is_refused(refused, ctx, damaged, name):
    damage, needles = DAMAGE[name]
    root = damaged(damage)
    refused(["evaluate", root, ctx.poisson, "--out", ctx.runs], *needles, watch=ctx.watch)


def test_damaged_checkpoint_is_one_line_in_the_api_too(damaged):
    damage, needles = DAMAGE["arch width 10^6"]
    with pytest.raises(PdefmError, match="needs about .* of memory"):
        pdefm.load_model(damaged(damage))


@pytest.mark.parametrize(
    "argv",
    [
        ["train", "{poisson}", "--init", "{nowhere}", *FAST],
        ["evaluate", "{nowhere}", "{poisson}"],
    ],
    ids=["train", "evaluate"],
)
def test_missing_checkpoint_is_refused(refused, ctx, tmp_path, argv):
    subs = {"{poisson}": ctx.poisson, "{nowhere}": tmp_path / "nowhere"}
    argv = [subs.get(a, a) for a in argv]
    refused([*argv, "--out", ctx.runs], "nowhere", "does not exist", watch=ctx.watch)


def test_checkpoint_that_is_a_file_is_refused(refused, ctx, tmp_path):
    (tmp_path / "ckpt").write_text("x")
    refused(["evaluate", tmp_path / "ckpt", ctx.poisson, "--out", ctx.runs], "is a file")


@pytest.mark.parametrize("command", ["train", "evaluate"])
def test_unseen_channels_are_refused(refused, ctx, command):
    if command == "train":
        argv = ["train", ctx.helmholtz, "--init", ctx.checkpoint, *FAST]
    else:
        argv = ["evaluate", ctx.checkpoint, ctx.helmholtz]
    refused([*argv, "--out", ctx.runs], "never seen", "helmholtz_c", watch=ctx.watch)


def test_evaluate_bad_device_and_dataset(refused, ctx, tmp_path):
    refused(
        ["evaluate", ctx.checkpoint, ctx.poisson, "--device", "tpu", "--out", ctx.runs], "--device"
    )
    (tmp_path / "data").write_text("x")
    refused(["evaluate", ctx.checkpoint, tmp_path / "data", "--out", ctx.runs], "card.json")


# -- runs in progress ------------------------------------------------------------------------------
def _run_dir(ctx, **kw) -> Path:
    """Where `pdefm train POISSON *FAST --out RUNS` puts its run (same id computation)."""
    config = RunConfig(data=str(ctx.poisson), model="fno-micro", epochs=None, steps=2, **kw)
    data_hash = PDEDataset(ctx.poisson).card.data_hash
    return ctx.runs / RunConfig.run_id(config.resolved(data_hash))


def test_second_process_on_a_running_run_is_refused(refused, ctx):
    run_dir = _run_dir(ctx)
    run_dir.mkdir(parents=True)
    with directory_lock(run_dir, "held by the test"):
        refused(
            ["train", ctx.poisson, *FAST, "--out", ctx.runs],
            "being trained by another process",
            run_dir.name,
            watch=ctx.watch,
        )


def test_damaged_record_is_refused(refused, ctx):
    run_dir = _run_dir(ctx)
    run_dir.mkdir(parents=True)
    (run_dir / "record.json").write_text("{")
    refused(
        ["train", ctx.poisson, *FAST, "--out", ctx.runs], "record.json is damaged", watch=ctx.watch
    )


def test_stale_temp_files_are_removed_when_the_run_resumes(ctx):
    run_dir = _run_dir(ctx)
    (run_dir / ".checkpoint.99999.abcd.tmp").mkdir(parents=True)
    (run_dir / "lr-0.001").mkdir()
    (run_dir / "lr-0.001" / ".state.safetensors.99999.abcd.tmp").write_bytes(b"half")
    record = loop.train(
        RunConfig(
            data=str(ctx.poisson),
            model="fno-micro",
            epochs=None,
            steps=2,
            out=str(ctx.runs),
            progress=False,
        )
    )
    assert record["status"] == "completed" and Path(record["out"]) == run_dir
    assert not list(run_dir.rglob("*.tmp"))


def test_two_identical_trainings_at_once(datasets, tmp_path):
    """Both exit cleanly: one trains, the other is refused in one line (or, arriving after
    the first finished, prints its record); one completed record, no temp files."""
    data = datasets["poisson"][1]
    cmd = [sys.executable, "-m", "pdefm.cli", "train", str(data), "--model", "fno-micro"]
    cmd += ["--epochs", "15", "--quiet", "--out", str(tmp_path / "runs")]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    procs = [
        subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for _ in range(2)
    ]
    outputs = [p.communicate(timeout=600) for p in procs]
    results = [(p.returncode, err) for p, (_, err) in zip(procs, outputs, strict=True)]
    for code, err in results:
        assert "Traceback" not in err, err
        assert code in (0, 2), (code, err)
        if code == 2:
            lines = [line for line in err.splitlines() if line.strip()]
            assert len(lines) == 1 and "being trained by another process" in lines[0], err
    assert any(code == 0 for code, _ in results)
    records = list((tmp_path / "runs").glob("*/record.json"))
    assert len(records) == 1
    assert json.loads(records[0].read_text())["status"] == "completed"
    assert not list((tmp_path / "runs").rglob("*.tmp"))


# -- Python API ------------------------------------------------------------------------------------
API_CASES = {
    "weight_decay nan": (dict(weight_decay=float("nan")), "--weight-decay"),
    "weight_decay text": (dict(weight_decay="0.1"), "--weight-decay must be a number"),
    "lrs text": (dict(lrs="fast"), "--lr"),
    "lrs empty": (dict(lrs=[]), "--lr needs at least one"),
    "epochs float": (dict(epochs=2.5), "--epochs must be a whole number"),
    "epochs bool": (dict(epochs=True), "--epochs must be a whole number"),
    "both budgets": (dict(epochs=2, steps=2), "exactly one budget"),
    "n_train text": (dict(n_train="64"), "--n-train"),
    "device meta": (dict(device="meta"), "--device"),
    "new_channels bad": (dict(new_channels="zero"), "--new-channels"),
    "progress text": (dict(progress="no"), "progress must be True or False"),
    "unknown option": (dict(epoch=3), "no option 'epoch'"),
    "run_name with a slash": (dict(run_name="../x"), "not a plain name"),
}


@pytest.mark.parametrize("kw,needle", API_CASES.values(), ids=list(API_CASES))
def test_finetune_refuses_before_writing(ctx, tmp_path, kw, needle):
    kw = {"steps": 2, "progress": False, **kw} if "epochs" not in kw else kw
    before = [snapshot(p) for p in (tmp_path, ctx.poisson, ctx.checkpoint)]
    with pytest.raises(PdefmError, match=None) as info:
        pdefm.finetune(ctx.checkpoint, ctx.poisson, out=tmp_path / "runs", **kw)
    message = str(info.value)
    assert needle in message and "\n" not in message, message
    assert [snapshot(p) for p in (tmp_path, ctx.poisson, ctx.checkpoint)] == before


@pytest.mark.parametrize(
    "overrides,needle",
    [
        ({"width": 10**5}, "needs about"),
        ({"modes": 40}, "too small for 40 Fourier modes"),
        ({"depth": 2}, "unknown option 'depth'"),
        ({"width": 0}, "model option width must be >= 1"),
    ],
    ids=["width 10^5", "modes beyond the grid", "unknown option", "width zero"],
)
def test_model_overrides_are_checked_before_writing(ctx, tmp_path, overrides, needle):
    config = RunConfig(
        data=str(ctx.poisson),
        model="fno-micro",
        model_overrides=overrides,
        epochs=None,
        steps=2,
        out=str(tmp_path / "runs"),
        progress=False,
    )
    with pytest.raises(PdefmError, match=None) as info:
        loop.train(config)
    assert needle in str(info.value), str(info.value)
    assert not (tmp_path / "runs").exists()


def test_predict_refuses_bad_inputs(ckpt):
    model = pdefm.load_model(ckpt)
    good = {"source": torch.zeros(2, 64, 64).numpy(), "diffusion_xx": 1.0, "diffusion_yy": 1.0}
    good["diffusion_xy"] = 0.0
    assert model.predict(good).shape == (2, 1, 64, 64)
    cases = [
        ({k: v for k, v in good.items() if k != "diffusion_yy"}, "inputs lack 'diffusion_yy'"),
        ({**good, "velocity_x": 1.0}, "never seen the input(s) 'velocity_x'"),
        ({**good, "source": [[1, 2], [3]]}, "source is not an array of numbers"),
        ({**good, "source": torch.zeros(2, 64, 64, dtype=torch.complex64)}, "source is complex"),
        ({**good, "diffusion_xx": "one"}, "diffusion_xx must hold real numbers"),
        ({**good, "diffusion_xx": float("inf")}, "diffusion_xx holds NaN or infinite"),
        ({**good, "source": torch.zeros(0, 64, 64).numpy()}, "expected (B, n, n), B >= 1"),
        (torch.zeros(0, 4, 64, 64), "no samples"),
        (torch.zeros(2, 4, 64), "expected (B, 4, n, n)"),
        (torch.zeros(1, 4, 4, 4), "too small"),
    ]
    for inputs, needle in cases:
        with pytest.raises(PdefmError) as info:
            model.predict(inputs)
        assert needle in str(info.value), (needle, str(info.value))
    with pytest.raises(PdefmError, match="batch_size must be >= 1"):
        model.predict(good, batch_size=0)
    with pytest.raises(PdefmError, match="family must be a family name"):
        model.predict(good, family=3)


# -- run ids follow content ------------------------------------------------------------------------
def test_moved_runs_are_not_repeated(ctx, tmp_path, monkeypatch):
    """A fine-tune's id hashes its init checkpoint's content: the runs folder copied elsewhere
    (checkpoint included) finds its finished fine-tune instead of training it again."""
    first = tmp_path / "a" / "runs"
    common = dict(data=str(ctx.poisson), epochs=None, steps=2, progress=False)
    pre = loop.train(RunConfig(model="fno-micro", out=str(first), **common))
    tuned = loop.train(RunConfig(init=pre["checkpoint"], out=str(first), **common))
    assert tuned["status"] == "completed" and tuned["config"]["init"].startswith("sha256:")
    shutil.copytree(tmp_path / "a", tmp_path / "b")
    shutil.rmtree(tmp_path / "a")
    moved = tmp_path / "b" / "runs" / Path(pre["checkpoint"]).relative_to(first)

    def retrain(*args, **kwargs):
        raise AssertionError("the moved fine-tune was trained again")

    monkeypatch.setattr(loop, "_execute", retrain)
    again = loop.train(RunConfig(init=str(moved), out=str(tmp_path / "b" / "runs"), **common))
    assert again["id"] == tuned["id"] and again["status"] == "completed"
    copy = tmp_path / "elsewhere" / "ckpt"
    shutil.copytree(moved, copy)
    config = RunConfig(init=str(copy), out=str(tmp_path / "b" / "runs"), **common)
    assert loop.train(config)["id"] == tuned["id"]  # a copied checkpoint is the same init
