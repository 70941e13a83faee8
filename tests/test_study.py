"""Studies: deterministic expansion, typos rejected with their line, kill and resume."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from pdefm.errors import PdefmError
from pdefm.study.executors import LocalPool
from pdefm.study.results import load_results
from pdefm.study.runner import run_status, run_study
from pdefm.study.spec import load_study

TINY = """\
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
  sizes: [4, 8, 16]
  inits: [scratch, p]
  modes: [full, head]
  models: [fno-micro]
  lrs: [0.003]
  lr_extend: 0
  seeds: [0, 1]
  steps: 10
  zero_shot: true
"""


def write(tmp_path: Path, text: str, name: str = "study.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def test_a_loss_key_reaches_the_runs_and_only_their_ids(tmp_path):
    plain = load_study(write(tmp_path, TINY))
    text = TINY.replace("epochs: 3, lrs", "epochs: 3, loss: rel_l2, lrs").replace(
        "  zero_shot: true", "  loss: rel_l2\n  zero_shot: true"
    )
    rel = load_study(write(tmp_path, text, "rel.yaml"))
    trained = [r for r in rel.runs if r.config and r.config.get("mode") != "zero-shot"]
    assert trained and all(r.config["loss"] == "rel_l2" for r in trained)
    assert all("loss" not in (r.config or {}) for r in plain.runs)  # default: ids as before
    assert {r.id for r in plain.runs if r.kind == "data"} == {
        r.id for r in rel.runs if r.kind == "data"
    }
    assert not {r.id for r in plain.runs if r.kind != "data"} & {r.id for r in rel.runs}


def test_expansion_is_deterministic_and_complete(tmp_path):
    a = load_study(write(tmp_path, TINY))
    b = load_study(write(tmp_path, TINY, "copy.yaml"))
    assert [r.id for r in a.runs] == [r.id for r in b.runs]
    kinds = [r.kind for r in a.runs]
    # 3 sizes x 2 seeds x (1 scratch model + 2 fine-tune modes) + 1 zero-shot
    assert kinds.count("data") == 2 and kinds.count("pretrain") == 1
    assert kinds.count("downstream") == 3 * 2 * 3 + 1
    assert len({r.id for r in a.runs}) == len(a.runs)
    down = [r for r in a.runs if r.kind == "downstream" and r.labels["method"] == "finetune"]
    stage = next(r for r in a.runs if r.kind == "pretrain")
    assert all(stage.id in r.depends for r in down)
    changed = load_study(write(tmp_path, TINY.replace("steps: 10", "steps: 11"), "c.yaml"))
    assert {r.id for r in changed.runs if r.kind != "downstream"} == {
        r.id for r in a.runs if r.kind != "downstream"
    }
    trained = [r for r in changed.runs if r.kind == "downstream" and r.labels["n_train"]]
    assert not {r.id for r in trained} & {r.id for r in a.runs}  # zero-shot has no budget


@pytest.mark.parametrize(
    "old,new,match,line",
    [
        ("epochs: 3, lrs", "epocs: 3, lrs", "unknown key 'epocs' in pretrain.p", 8),
        (
            "model: fno-micro, epochs",
            "model: fno-huge, epochs",
            "unknown model preset 'fno-huge'",
            8,
        ),
        ("inits: [scratch, p]", "inits: [scratch, q]", "init 'q' is neither scratch nor", 12),
        ("tasks: [down]", "tasks: [dwn]", "no dataset named 'dwn'", 10),
        (
            "family: poisson, range: [1, 5]",
            "family: poison, range: [1, 5]",
            "unknown PDE family",
            5,
        ),
        ("sizes: [4, 8, 16]", "sizes: [4, 8, 64]", "size 64 is outside 1..32", 11),
        ("  steps: 10\n", "  steps: 10\n  epochs: 3\n", "exactly one of epochs or steps", 10),
        ("modes: [full, head]", "modes: [full, sideways]", "unknown mode 'sideways'", 13),
    ],
)
def test_typos_are_rejected_with_their_line_before_anything_runs(tmp_path, old, new, match, line):
    assert old in TINY
    path = write(tmp_path, TINY.replace(old, new))
    with pytest.raises(PdefmError, match=match) as info:
        run_study(path, tmp_path / "out", progress=False)
    assert f"study.yaml:{line}:" in str(info.value)
    assert not (tmp_path / "out").exists()


def test_bad_yaml_and_missing_file(tmp_path):
    with pytest.raises(PdefmError, match=r"study.yaml:\d+: not valid YAML"):
        load_study(write(tmp_path, "name: x\ndatasets: [unclosed\n"))
    with pytest.raises(PdefmError, match="cannot read study file"):
        load_study(tmp_path / "nope.yaml")


def _alive(pid: int) -> bool:
    """Whether process ``pid`` still runs (a zombie waiting to be reaped has ended)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] not in ("Z", "X")


@pytest.mark.skipif(not Path("/proc").is_dir(), reason="reads process states from /proc")
def test_study_worker_ends_when_its_runner_is_killed():
    # a runner that starts one worker the way the process pool does, then is killed -9
    worker = (
        "import os, time; from pdefm.study.execute import start_worker; "
        "start_worker(1, os.getppid()); print('ready', flush=True); time.sleep(120)"
    )
    runner = (
        "import subprocess, sys, time; "
        f"p = subprocess.Popen([sys.executable, '-c', {worker!r}]); "
        "print(p.pid, flush=True); time.sleep(120)"
    )
    proc = subprocess.Popen([sys.executable, "-c", runner], stdout=subprocess.PIPE, text=True)
    pid = int(proc.stdout.readline())
    assert proc.stdout.readline().strip() == "ready"
    time.sleep(0.5)
    assert _alive(pid)  # its runner alive: the worker keeps working
    proc.kill()
    proc.wait()
    deadline = time.time() + 30
    while _alive(pid) and time.time() < deadline:
        time.sleep(0.1)
    assert not _alive(pid)  # orphaned: gone within a few seconds, not left training


def test_killed_study_finishes_with_every_run_done_exactly_once(tmp_path):
    spec = write(tmp_path, TINY)
    root = tmp_path / "tiny"
    cmd = [
        sys.executable,
        "-m",
        "pdefm.cli",
        "study",
        "run",
        str(spec),
        "--out",
        str(root),
        "--quiet",
    ]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 300
    while time.time() < deadline:
        done = [
            p
            for p in root.glob("runs/*/record.json")
            if json.loads(p.read_text()).get("status") == "completed"
        ]
        if len(done) >= 4:
            break
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    before = {
        p: p.read_bytes()
        for p in root.glob("runs/*/record.json")
        if json.loads(p.read_text()).get("status") == "completed"
    }
    assert 4 <= len(before) < 20
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    study = load_study(spec)
    assert all(run_status(r, root) == "done" for r in study.runs)
    for path, content in before.items():  # finished runs were not run again
        assert path.read_bytes() == content
    records = list(root.glob("runs/*/record.json"))
    assert len(records) == sum(r.kind != "data" for r in study.runs)
    rows = load_results(root)
    assert all(r["status"] == "completed" for r in rows)
    assert {r["method"] for r in rows} == {"pretrain", "scratch", "finetune", "zero-shot"}
    second = subprocess.run(cmd, check=True, capture_output=True, text=True)
    assert "study done" in second.stdout
    assert {p: p.read_bytes() for p in before} == before


def test_study_results_report_and_cache(tmp_path, capsys):
    from pdefm.cli import fresh_report, main

    small = TINY.replace("sizes: [4, 8, 16]", "sizes: [4, 16]").replace(
        "seeds: [0, 1]", "seeds: [0]"
    )
    spec = write(tmp_path, small.replace("modes: [full, head]", "modes: [full]"))
    root = tmp_path / "tiny"
    assert main(["study", "run", str(spec), "--out", str(root), "--quiet"]) == 0
    assert main(["study", "plan", str(spec), "--out", str(root)]) == 0
    assert "0 todo" in capsys.readouterr().out
    assert main(["study", "status", str(root)]) == 0
    assert main(["results", str(root), "--csv", str(tmp_path / "r.csv")]) == 0
    lines = (tmp_path / "r.csv").read_text().splitlines()
    assert lines[0].startswith("run_id,kind,status") and len(lines) == 1 + 1 + 2 * 2 + 1
    assert fresh_report(root) is None
    assert main(["report", str(root)]) == 0
    out = capsys.readouterr().out
    assert "fine-tuning reached" in out or "scratch" in out
    html = (root / "report" / "report.html").read_text()
    assert html.count("data:image/png;base64,") >= 2
    # the setup states the run time: every planned training run, summed from the records
    records = [json.loads(p.read_text()) for p in root.glob("runs/*/record.json")]
    total = sum(r["wall_time_s"] for r in records) / 60
    text = (root / "report" / "report.md").read_text()
    assert f"Run time: {total:.1f} min summed over {len(records)} runs (each" in text
    assert fresh_report(root) == (root / "report" / "headline.txt").read_text().strip()


@pytest.mark.parametrize(
    "path",
    sorted(str(p) for p in (Path(__file__).parents[1] / "studies").glob("*/*.yaml"))
    + sorted(str(p) for p in (Path(__file__).parents[1] / "results").glob("*/study.yaml"))
    + [str(Path(__file__).parents[1] / "src/pdefm/study/demo.yaml")],
)
def test_shipped_studies_are_valid(path):
    study = load_study(path)
    kinds = {r.kind for r in study.runs}
    assert kinds == {"data", "pretrain", "downstream"}


def test_parallel_workers_run_each_run_once(tmp_path):
    small = TINY.replace("sizes: [4, 8, 16]", "sizes: [4, 8]").replace(
        "seeds: [0, 1]", "seeds: [0]"
    )
    spec = write(tmp_path, small)
    root = run_study(spec, tmp_path / "par", executor=LocalPool(2), progress=False)
    study = load_study(spec)
    assert all(run_status(r, root) == "done" for r in study.runs)
    assert len(list(root.glob("runs/*/record.json"))) == sum(r.kind != "data" for r in study.runs)


def test_failed_pretraining_skips_its_dependents_only(tmp_path, capsys):
    small = TINY.replace("sizes: [4, 8, 16]", "sizes: [4]").replace("seeds: [0, 1]", "seeds: [0]")
    spec = write(tmp_path, small.replace("lrs: [3e-3]}", "lrs: [1e4]}"))  # pre-training diverges
    root = run_study(spec, tmp_path / "f", progress=False)
    rows = {(r["method"], r["mode"]): r["status"] for r in load_results(root)}
    assert rows[("pretrain", "full")] == "failed"
    assert rows[("scratch", "full")] == "completed"
    assert rows[("finetune", "full")] == "todo" and rows[("zero-shot", "zero-shot")] == "todo"


def test_a_dataset_takes_its_family_constants(tmp_path):
    text = TINY.replace(
        "family: poisson, range: [5, 10]",
        "family: darcy, range: [1, 5], constants: {boundary: periodic, forcing: lattice}",
    )
    study = load_study(write(tmp_path, text))
    spec = next(s for s, _ in study.datasets.values() if s.family == "darcy")
    assert spec.family_config == {"boundary": "periodic", "forcing": "lattice"}


def test_padding_is_a_study_setting(tmp_path):
    text = TINY.replace("  steps: 10\n", "  steps: 10\n  padding: 0.25\n")
    study = load_study(write(tmp_path, text))
    runs = [r for r in study.runs if r.labels.get("method") in ("scratch", "finetune")]
    assert runs and all(r.config["padding"] == 0.25 for r in runs)
    bad = TINY.replace("  steps: 10\n", "  steps: 10\n  padding: lots\n")
    with pytest.raises(
        PdefmError, match=r"bad.yaml:\d+: downstream.padding must be auto or a fraction"
    ):
        load_study(write(tmp_path, bad, "bad.yaml"))


# Ids of TINY's runs computed before stages took `seeds` (pdefm at ddecb6b): a stage of one
# seed must keep them, or every finished study would run again.
TINY_IDS = {
    "pretrain": "56e2b8fdf18e217b",
    ("scratch", "full", 8, 1): "04852cfaa473fed5",
    ("finetune", "full", 4, 0): "cde4efbec05e0b7f",
    ("finetune", "head", 16, 1): "d0f72c0bb0986a77",
    ("zero-shot", "zero-shot", 0, 0): "4b68443de5b1118f",
}
# the ids above were computed before protocol versions: TINY as a protocol-1 study keeps them
TINY_V1 = TINY.replace("name: tiny\n", "name: tiny\nprotocol: 1\n")
SEED3_IDS = {  # the stage with the setting seed: 3
    "pretrain": "8deec69bfacf52ff",
    ("finetune", "full", 4, 0): "1a19e3c501cfed26",
    ("zero-shot", "zero-shot", 0, 3): "695268f8a6875447",
}


def _ids(study) -> dict:
    """TINY_IDS-style keys -> run id (a stage's runs by seed: ("pretrain", seed))."""
    out = {}
    for r in study.runs:
        if r.kind == "pretrain":
            out[("pretrain", r.labels["seed"])] = r.id
        elif r.kind == "downstream":
            lab = r.labels
            out[(lab["method"], lab["mode"], lab["n_train"], lab["seed"])] = r.id
    return out


def _stage(text: str, fields: str) -> str:
    """TINY with the stage p's fields after its lrs."""
    return text.replace("lrs: [3e-3]}", f"lrs: [3e-3], {fields}}}")


@pytest.mark.parametrize("fields", ["", "seeds: [0]"])
def test_a_one_seed_stage_keeps_the_run_ids_of_before(tmp_path, fields):
    study = load_study(write(tmp_path, _stage(TINY_V1, fields) if fields else TINY_V1))
    ids = _ids(study)
    assert ids.pop(("pretrain", 0)) == TINY_IDS["pretrain"]
    assert {k: ids[k] for k in TINY_IDS if k != "pretrain"} == {
        k: v for k, v in TINY_IDS.items() if k != "pretrain"
    }
    plain = load_study(write(tmp_path, TINY_V1, "plain.yaml"))
    assert [r.id for r in study.runs] == [r.id for r in plain.runs]


@pytest.mark.parametrize("fields", ["seed: 3", "seeds: [3]"])
def test_a_seed_setting_and_one_listed_seed_keep_the_ids_of_before(tmp_path, fields):
    text = TINY_V1.replace("epochs: 3, lrs", f"epochs: 3, {fields}, lrs")
    ids = _ids(load_study(write(tmp_path, text)))
    assert ids[("pretrain", 3)] == SEED3_IDS["pretrain"]
    assert ids[("finetune", "full", 4, 0)] == SEED3_IDS[("finetune", "full", 4, 0)]
    assert ids[("zero-shot", "zero-shot", 0, 3)] == SEED3_IDS[("zero-shot", "zero-shot", 0, 3)]


def test_sampled_pretraining_expands_one_run_per_seed(tmp_path):
    text = _stage(TINY_V1, "seeds: [0, 7]").replace("seeds: [0, 1]", "seeds: [0, 1, 2]")
    study = load_study(write(tmp_path, text))
    stages = {r.labels["seed"]: r for r in study.runs if r.kind == "pretrain"}
    assert list(stages) == [0, 7] and stages[0].id == TINY_IDS["pretrain"]
    assert "seed" not in stages[0].config and stages[7].config["seed"] == 7
    for r in study.runs:
        lab = r.labels
        if r.kind != "downstream" or lab["method"] == "scratch":
            assert r.kind != "downstream" or "pretrain_seed" not in lab
            continue
        # downstream seed s starts from P[s mod 2]; zero-shot evaluates each seed's model
        want = lab["seed"] if lab["method"] == "zero-shot" else [0, 7][lab["seed"] % 2]
        assert lab["pretrain_seed"] == want
        assert stages[want].id in r.depends
        assert r.config["init"] == f"runs/{stages[want].id}/checkpoint"
    ids = _ids(study)
    assert ids[("finetune", "full", 4, 0)] == TINY_IDS[("finetune", "full", 4, 0)]
    assert ids[("zero-shot", "zero-shot", 0, 0)] == TINY_IDS[("zero-shot", "zero-shot", 0, 0)]
    assert ("zero-shot", "zero-shot", 0, 7) in ids
    # 3 sizes x 3 seeds x (1 scratch + 2 modes) + 2 zero-shot; plan and estimate count each
    kinds = [r.kind for r in study.runs]
    assert kinds.count("pretrain") == 2 and kinds.count("downstream") == 3 * 3 * 3 + 2
    from pdefm.study.estimate import plan_work
    from pdefm.study.runner import plan_lines

    assert sum(w.run.kind == "pretrain" for w in plan_work(study)) == 2
    assert plan_lines(study, tmp_path / "none")[-1].startswith(f"{len(study.runs)} runs: ")


@pytest.mark.parametrize(
    "fields,match",
    [
        ("seeds: []", "pretrain.p.seeds is empty"),
        ("seeds: [0, 1, 0]", "pretrain.p.seeds lists 0 twice"),
        ("seeds: [-1]", "pretrain.p.seeds must be >= 0, got -1"),
        ("seeds: [1.0]", "pretrain.p.seeds must be a whole number, got 1.0"),
        ("seeds: [true]", "pretrain.p.seeds must be a whole number, got True"),
        ("seeds: 2", r"pretrain.p.seeds must be a list of pre-training seeds, e.g. \[0, 1, 2\]"),
        ("seed: 1, seeds: [0, 1]", "pretrain.p has both seed and seeds; keep seeds"),
    ],
)
def test_bad_stage_seeds_are_one_line_with_their_line(tmp_path, fields, match):
    path = write(tmp_path, _stage(TINY, fields))
    with pytest.raises(PdefmError, match=match) as info:
        load_study(path)
    assert str(info.value).startswith(f"{path}:8: ") and "\n" not in str(info.value)


def test_results_and_stage_checkpoint_name_the_pretraining_seed(tmp_path):
    import pdefm
    from pdefm.study.runner import write_plan

    text = _stage(TINY, "seeds: [4, 2]").replace("seeds: [0, 1]", "seeds: [0, 1, 2]")
    study = load_study(write(tmp_path, text))
    root = tmp_path / "tiny"
    root.mkdir()
    write_plan(study, root)  # nothing run: every row is "todo"
    rows = load_results(root)
    seeds = {(r.method, r.seed, r.pretrain_seed) for r in rows if r.mode in ("full", "zero-shot")}
    assert {(m, s, p) for m, s, p in seeds if m == "pretrain"} == {("pretrain", 4, 4),
                                                                   ("pretrain", 2, 2)}  # fmt: skip
    assert {(s, p) for m, s, p in seeds if m == "finetune"} == {(0, 4), (1, 2), (2, 4)}
    assert {(s, p) for m, s, p in seeds if m == "zero-shot"} == {(4, 4), (2, 2)}
    assert {p for m, _, p in seeds if m == "scratch"} == {None}
    stage = {r.labels["seed"]: r.id for r in study.runs if r.kind == "pretrain"}
    for run_id in stage.values():  # a finished checkpoint is its card
        (root / "runs" / run_id / "checkpoint").mkdir(parents=True)
        (root / "runs" / run_id / "checkpoint" / "card.json").write_text("{}")
    assert pdefm.stage_checkpoint(root, "p") == root / "runs" / stage[4] / "checkpoint"
    assert pdefm.stage_checkpoint(root, "p", seed=2) == root / "runs" / stage[2] / "checkpoint"
    with pytest.raises(PdefmError, match=r"^stage 'p' has no pre-training seed 3 \(seeds: 4, 2\)$"):
        pdefm.stage_checkpoint(root, "p", seed=3)
    with pytest.raises(PdefmError, match="seed .* must be a whole number, got True"):
        pdefm.stage_checkpoint(root, "p", seed=True)
