"""Bad input to `pdefm study`, `results`, `report` and `demo` is refused with one line.

Every case runs the CLI in-process through the ``refused`` fixture (tests/conftest.py): exit
code 2, exactly one ``error: ...`` line holding the needles (the FILE:LINE and the field at
fault), and the test's folder, study file included, byte-for-byte as it was: nothing written,
no study folder created.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from pdefm.checks import check_output_dir, check_output_file
from pdefm.errors import PdefmError
from pdefm.study.runner import _copy_spec
from pdefm.study.spec import load_study

# Line numbers matter: the cases below name the line at fault.
BASE = """\
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
  sizes: [4, 8]
  inits: [scratch, p]
  models: [fno-micro]
  lrs: [0.003]
  seeds: [0]
  steps: 10
"""
PRE = "  pre:  {family: poisson, range: [1, 5], n_train: 64, n_val: 16, n_test: 16}\n"
DOWN = "  down: {family: poisson, range: [5, 10], n_train: 32, n_val: 16, n_test: 16, seed: 1}\n"
STAGE = "  p: {data: pre, model: fno-micro, epochs: 3, lrs: [3e-3]}\n"
GRID = BASE[BASE.index("downstream:") :]
MIX = "  mix: {mixture: {pre: 1, down: 1}, n_train: 32, n_val: 16, n_test: 16}\n"

# (id, text replaced in BASE, replacement, needles of the one error line)
SPEC_CASES = [
    # numbers: type, sign, finiteness, range
    ("sizes-text", "sizes: [4, 8]", "sizes: [a, b]", ["study.yaml:11:", "sizes", "whole number"]),
    ("sizes-empty", "sizes: [4, 8]", "sizes: []", ["study.yaml:11:", "sizes is empty"]),
    ("sizes-zero", "sizes: [4, 8]", "sizes: [0, 8]", ["study.yaml:11:", "sizes", ">= 1"]),
    ("sizes-float", "sizes: [4, 8]", "sizes: [4, 8.0]", ["study.yaml:11:", "whole number"]),
    ("sizes-repeat", "sizes: [4, 8]", "sizes: [4, 4]", ["study.yaml:11:", "twice"]),
    ("sizes-bool", "sizes: [4, 8]", "sizes: [4, true]", ["study.yaml:11:", "whole number"]),
    ("size-over-n", "sizes: [4, 8]", "sizes: [4, 64]", ["study.yaml:11:", "outside 1..32"]),
    ("lrs-negative", "lrs: [0.003]", "lrs: [-0.001]", ["study.yaml:14:", "lrs", "> 0"]),
    ("lrs-zero", "lrs: [0.003]", "lrs: [0]", ["study.yaml:14:", "lrs", "> 0"]),
    ("lrs-nan", "lrs: [0.003]", "lrs: [.nan]", ["study.yaml:14:", "finite"]),
    ("lrs-inf", "lrs: [0.003]", "lrs: [.inf]", ["study.yaml:14:", "finite"]),
    ("lrs-bool", "lrs: [0.003]", "lrs: [true]", ["study.yaml:14:", "must be a number"]),
    ("lrs-text", "lrs: [0.003]", "lrs: [fast]", ["study.yaml:14:", "must be a number"]),
    ("lrs-empty", "lrs: [0.003]", "lrs: []", ["study.yaml:14:", "lrs is empty"]),
    ("lrs-repeat", "lrs: [0.003]", "lrs: [0.003, 3e-3]", ["study.yaml:14:", "twice"]),
    (
        "batch-zero",
        "  steps: 10\n",
        "  steps: 10\n  batch_size: 0\n",
        ["study.yaml:17:", "batch_size"],
    ),
    (
        "batch-huge",
        "  steps: 10\n",
        "  steps: 10\n  batch_size: 99999999999\n",
        ["batch_size", "<="],
    ),
    ("steps-negative", "steps: 10", "steps: -5", ["study.yaml:16:", "steps", ">= 1"]),
    ("steps-huge", "steps: 10", "steps: 1000000000000", ["study.yaml:16:", "steps", "<="]),
    ("steps-and-epochs", "  steps: 10\n", "  steps: 10\n  epochs: 3\n", ["exactly one of epochs"]),
    (
        "patience-with-steps",
        "  steps: 10\n",
        "  steps: 10\n  patience: 3\n",
        ["study.yaml:17:", "patience stops within an epoch cap", "epochs: CAP"],
    ),
    (
        "patience-zero",
        "  steps: 10\n",
        "  epochs: 10\n  patience: 0\n",
        ["study.yaml:17:", "downstream.patience", ">= 1"],
    ),
    (
        "lr-extend-negative",
        "  seeds: [0]\n",
        "  seeds: [0]\n  lr_extend: -1\n",
        ["study.yaml:16:", "downstream.lr_extend", ">= 0"],
    ),
    (
        "lr-extend-huge",
        "  seeds: [0]\n",
        "  seeds: [0]\n  lr_extend: 99\n",
        ["study.yaml:16:", "downstream.lr_extend", "<= 8"],
    ),
    (
        "loss-unknown",
        "  seeds: [0]\n",
        "  seeds: [0]\n  loss: l1\n",
        ["study.yaml:16:", "unknown loss 'l1'", "mse, rel_l2"],
    ),
    (
        "lrs-not-auto",
        "lrs: [0.003]",
        "lrs: automatic",
        ["study.yaml:14:", "list of learning rates or auto"],
    ),
    ("epochs-zero", "epochs: 3, lrs", "epochs: 0, lrs", ["study.yaml:8:", "pretrain.p.epochs"]),
    ("epochs-fraction", "epochs: 3, lrs", "epochs: 2.5, lrs", ["study.yaml:8:", "whole number"]),
    ("epochs-bool", "epochs: 3, lrs", "epochs: true, lrs", ["study.yaml:8:", "whole number"]),
    ("seeds-negative", "seeds: [0]", "seeds: [-1]", ["study.yaml:15:", "seeds", ">= 0"]),
    ("seed-text", "n_test: 16, seed: 1}", "n_test: 16, seed: one}", ["study.yaml:6:", "seed"]),
    ("n-train-zero", "n_train: 64", "n_train: 0", ["study.yaml:5:", "datasets.pre.n_train"]),
    ("n-train-negative", "n_train: 64", "n_train: -64", ["study.yaml:5:", "n_train", ">= 1"]),
    ("n-train-huge", "n_train: 64", "n_train: 100000000000", ["study.yaml:5:", "n_train", "<="]),
    ("resolution-odd", "resolution: 32", "resolution: 33", ["study.yaml:2:", "even"]),
    ("resolution-zero", "resolution: 32", "resolution: 0", ["study.yaml:2:", "resolution"]),
    ("resolution-huge", "resolution: 32", "resolution: 1000000", ["study.yaml:2:", "<= 4096"]),
    ("sigma-zero", "sigma: 0.0625", "sigma: 0", ["study.yaml:3:", "sigma"]),
    ("sigma-negative", "sigma: 0.0625", "sigma: -1", ["study.yaml:3:", "sigma"]),
    ("sigma-wide", "sigma: 0.0625", "sigma: 0.75", ["study.yaml:3:", "sigma", "<= 0.5"]),
    ("range-inverted", "range: [5, 10]", "range: [10, 5]", ["study.yaml:6:", "inverted"]),
    ("range-inf", "range: [5, 10]", "range: [5, .inf]", ["study.yaml:6:", "finite"]),
    ("range-short", "range: [5, 10]", "range: [5]", ["study.yaml:6:", "[LOW, HIGH]"]),
    ("range-text", "range: [5, 10]", "range: [a, b]", ["study.yaml:6:", "must be a number"]),
    ("weight-decay-neg", "  steps: 10\n", "  steps: 10\n  weight_decay: -1\n", ["weight_decay"]),
    ("lora-rank-zero", "  steps: 10\n", "  steps: 10\n  lora_rank: 0\n", ["lora_rank", ">= 1"]),
    ("zero-shot-int", "  steps: 10\n", "  steps: 10\n  zero_shot: 1\n", ["true or false"]),
    ("drop-not-bool", "n_test: 16}\n", "n_test: 16, drop_unsampleable: 1}\n", ["true or false"]),
    ("max-abs-u-poisson", "n_test: 16}\n", "n_test: 16, max_abs_u: 2}\n", ["helmholtz only"]),
    (
        "constants-not-mapping",
        "n_test: 16}\n",
        "n_test: 16, constants: dirichlet}\n",
        ["study.yaml:5:", "constants must be a mapping"],
    ),
    (
        "constants-list-value",
        "n_test: 16}\n",
        "n_test: 16, constants: {boundary: [a]}}\n",
        ["study.yaml:5:", "constants.boundary must be a number or a word"],
    ),
    (
        "constants-unknown",
        "n_test: 16}\n",
        "n_test: 16, constants: {boundary: dirichlet}}\n",
        ["study.yaml:5:", "bad constants for family 'poisson'"],
    ),
    (
        "darcy-periodic-constant",
        PRE,
        "  pre:  {family: darcy, range: [1, 5], n_train: 64, n_val: 16, n_test: 16,\n"
        "         constants: {boundary: periodic}}\n",
        ["study.yaml:5:", "forcing 'constant' has no periodic solution"],
    ),
    # names: plain names only, so nothing can leave the study folder
    ("study-escape", "name: tiny", "name: ../escape-study", ["study.yaml:1:", "not a plain name"]),
    ("study-slash", "name: tiny", "name: a/b", ["study.yaml:1:", "not a plain name"]),
    ("study-dot", "name: tiny", "name: .hidden", ["study.yaml:1:", "not a plain name"]),
    ("study-long", "name: tiny", "name: " + "x" * 200, ["study.yaml:1:", "at most 128"]),
    ("study-list", "name: tiny", "name: [a]", ["study.yaml:1:", "text name"]),
    (
        "dataset-escape",
        "  down: {",
        "  ../../../escape-ds: {",
        ["study.yaml:6:", "not a plain name"],
    ),
    ("dataset-dotdot", "  down: {", "  '..': {", ["study.yaml:6:", "not a plain name"]),
    ("stage-escape", "  p: {", "  ../p: {", ["study.yaml:8:", "not a plain name"]),
    ("stage-scratch", "  p: {", "  scratch: {", ["study.yaml:8:", "scratch"]),
    ("dataset-case", DOWN, DOWN.replace("down:", "Pre: "), ["differ only in case"]),
    # duplicates
    (
        "duplicate-dataset",
        DOWN,
        DOWN.replace("down:", "pre: "),
        ["study.yaml:6:", "duplicate key 'pre'"],
    ),
    ("duplicate-stage", STAGE, STAGE * 2, ["study.yaml:9:", "duplicate key 'p'"]),
    (
        "duplicate-key-grid",
        "  steps: 10\n",
        "  steps: 10\n  steps: 20\n",
        ["study.yaml:17:", "duplicate"],
    ),
    (
        "duplicate-key-flow",
        "n_val: 16, n_test: 16}\n",
        "n_val: 16, n_val: 8, n_test: 16}\n",
        ["duplicate key 'n_val'"],
    ),
    ("duplicate-task", "tasks: [down]", "tasks: [down, down]", ["study.yaml:10:", "twice"]),
    ("duplicate-init", "inits: [scratch, p]", "inits: [p, p]", ["study.yaml:12:", "twice"]),
    # unknown keys, names and references (with a suggestion where one is close)
    (
        "unknown-key-stage",
        "epochs: 3, lrs",
        "epocs: 3, lrs",
        ["study.yaml:8:", "did you mean 'epochs'"],
    ),
    (
        "unknown-key-top",
        "resolution: 32",
        "resolutoin: 32",
        ["study.yaml:2:", "did you mean 'resolution'"],
    ),
    (
        "unknown-family",
        "family: poisson, range: [1, 5]",
        "family: poison, range: [1, 5]",
        ["did you mean 'poisson'"],
    ),
    (
        "family-number",
        "family: poisson, range: [1, 5]",
        "family: 3, range: [1, 5]",
        ["unknown PDE family"],
    ),
    (
        "unknown-preset",
        "model: fno-micro, epochs",
        "model: fno-huge, epochs",
        ["study.yaml:8:", "unknown model preset"],
    ),
    (
        "unknown-preset-grid",
        "models: [fno-micro]",
        "models: [fno-mikro]",
        ["did you mean 'fno-micro'"],
    ),
    (
        "missing-stage",
        "inits: [scratch, p]",
        "inits: [scratch, q]",
        ["study.yaml:12:", "neither scratch nor"],
    ),
    ("missing-task", "tasks: [down]", "tasks: [dwn]", ["study.yaml:10:", "did you mean 'down'"]),
    ("task-list", "tasks: [down]", "tasks: [[down]]", ["study.yaml:10:", "no dataset named"]),
    (
        "stage-missing-data",
        "data: pre,",
        "data: nothing,",
        ["study.yaml:8:", "no dataset named 'nothing'"],
    ),
    (
        "unknown-mode",
        "  steps: 10\n",
        "  steps: 10\n  modes: [sideways]\n",
        ["unknown mode 'sideways'"],
    ),
    ("mode-zero-shot", "  steps: 10\n", "  steps: 10\n  modes: [zero-shot]\n", ["zero_shot: true"]),
    ("scratch-no-models", "  models: [fno-micro]\n", "", ["study.yaml:12:", "no models"]),
    # structure
    (
        "datasets-list",
        "datasets:\n" + PRE + DOWN,
        "datasets: [pre, down]\n",
        ["study.yaml:4:", "mapping"],
    ),
    ("datasets-empty", "datasets:\n" + PRE + DOWN, "datasets: {}\n", ["datasets is empty"]),
    ("pretrain-empty", "pretrain:\n" + STAGE, "pretrain: {}\n", ["pretrain is empty"]),
    ("downstream-number", GRID, "downstream: 5\n", ["study.yaml:9:", "mapping"]),
    # mixtures
    ("mix-one-member", "pretrain:", MIX.replace(", down: 1", "") + "pretrain:", ["at least two"]),
    (
        "mix-negative-weight",
        "pretrain:",
        MIX.replace("down: 1", "down: -1") + "pretrain:",
        ["weight", "> 0"],
    ),
    (
        "mix-unknown-member",
        "pretrain:",
        MIX.replace("down: 1", "dwn: 1") + "pretrain:",
        ["'dwn' is not a generated dataset"],
    ),
    (
        "mix-too-large",
        "pretrain:",
        MIX.replace("n_train: 32", "n_train: 128") + "pretrain:",
        ["takes 64 train samples from 'down', which has 32"],
    ),
]


def write(tmp_path: Path, text: str, name: str = "study.yaml") -> Path:
    path = tmp_path / name
    path.write_bytes(text.encode())
    return path


@pytest.fixture
def here(tmp_path, monkeypatch):
    """Run in the test's folder: a study's default folder ./NAME lands (or would) there."""
    monkeypatch.chdir(tmp_path)
    return tmp_path


@pytest.mark.parametrize("verb", ["plan", "run"])
@pytest.mark.parametrize(
    "old,new,needles", [c[1:] for c in SPEC_CASES], ids=[c[0] for c in SPEC_CASES]
)
def test_bad_study_field_is_refused_with_its_line(refused, here, verb, old, new, needles):
    assert old in BASE
    spec = write(here, BASE.replace(old, new, 1))
    refused(["study", verb, spec], *needles)


def test_base_study_is_valid(tmp_path):
    study = load_study(write(tmp_path, BASE))
    assert {r.kind for r in study.runs} == {"data", "pretrain", "downstream"}
    mixed = load_study(write(tmp_path, BASE.replace("pretrain:", MIX + "pretrain:"), "m.yaml"))
    assert "mix" in mixed.datasets
    numeric = BASE.replace("down:", "2024:").replace("tasks: [down]", "tasks: [2024]")
    assert "2024" in load_study(write(tmp_path, numeric, "n.yaml")).datasets


FILE_CASES = [
    ("not-a-mapping", "- a\n- b\n", ["study.yaml:1:", "must be a mapping"]),
    ("a-number", "42\n", ["study.yaml:1:", "must be a mapping"]),
    ("tabs", "name: x\ndatasets:\n\tpre: {}\n", ["study.yaml:3:", "not valid YAML", "tabs"]),
    ("unclosed", "name: x\ndatasets: [unclosed\n", ["not valid YAML"]),
    ("empty", "", ["is empty"]),
    ("only-comments", "# nothing here\n", ["is empty"]),
    ("two-documents", "name: a\n---\nname: b\n", ["not valid YAML"]),
    ("python-tag", "name: !!python/object:os.system x\n", ["study.yaml:1:", "cannot read"]),
    ("custom-tag", "name: !mine x\n", ["study.yaml:1:", "cannot read"]),
    ("bad-date", "seed: 2001-13-01\n", ["study.yaml:1:", "cannot read"]),
    ("complex-key", "? [a, b]\n: 1\n", ["study.yaml:1:", "plain names"]),
    ("merge-key", "base: &b {family: poisson}\n<<: *b\n", ["study.yaml:2:", "<< merges"]),
    ("recursive-alias", "datasets: &a [*a]\n", ["too deeply"]),
    ("no-datasets", "name: x\n", ["needs the key 'datasets'"]),
    ("control-char", "name: a\x00b\n", ["not valid YAML"]),
]


@pytest.mark.parametrize(
    "text,needles", [c[1:] for c in FILE_CASES], ids=[c[0] for c in FILE_CASES]
)
def test_bad_study_file_is_refused(refused, here, text, needles):
    refused(["study", "plan", write(here, text)], *needles)


def test_unreadable_study_files(refused, here):
    refused(["study", "plan", here / "missing.yaml"], "cannot read study file")
    (here / "folder.yaml").mkdir()
    refused(["study", "plan", here / "folder.yaml"], "cannot read study file")
    binary = here / "binary.yaml"
    binary.write_bytes(b"\xff\xfe\x00\x81name")
    refused(["study", "plan", binary], "not a UTF-8 text file")


def test_study_name_from_an_unusable_file_name(refused, here):
    spec = write(here, BASE.replace("name: tiny\n", ""), ".hidden.yaml")
    refused(["study", "plan", spec], "add name: NAME")


# -- options of `study run` and `demo` ----------------------------------------------------------
@pytest.mark.parametrize(
    "options,needles",
    [
        (["--workers", "0"], ["--workers", ">= 1"]),
        (["--workers", "-1"], ["--workers", ">= 1"]),
        (["--workers", "100000"], ["--workers 100000", "per CPU core"]),
        (["--ray-cpus-per-run", "1"], ["need --executor ray"]),
        (["--address", "auto"], ["need --executor ray"]),
        (["--executor", "ray", "--ray-cpus-per-run", "-1"], ["--ray-cpus-per-run", ">= 0"]),
        (["--executor", "ray", "--ray-gpus-per-run", "nan"], ["--ray-gpus-per-run", "finite"]),
        (["--executor", "ray", "--ray-gpus-per-run", "inf"], ["--ray-gpus-per-run", "finite"]),
        (["--executor", "ray", "--workers", "2"], ["--workers is for the local executor"]),
    ],
    ids=lambda v: " ".join(v) if isinstance(v, list) else None,
)
def test_bad_run_options(refused, here, options, needles):
    refused(["study", "run", write(here, BASE), *options], *needles)


def test_ray_executor_without_ray_writes_nothing(refused, here, monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` now fails as if not installed
    refused(["study", "run", write(here, BASE), "--executor", "ray"], "needs Ray", "pip install")
    assert not (here / "tiny").exists()


def test_study_folder_that_is_a_file_or_holds_something_else(refused, here):
    spec = write(here, BASE)
    (here / "file").write_text("mine")
    for verb in ("plan", "run"):
        refused(["study", verb, spec, "--out", here / "file"], "is not a folder")
        refused(["study", verb, spec, "--out", here / "file" / "below"], "is a file")
    (here / "notes").mkdir()
    (here / "notes" / "todo.txt").write_text("mine")
    refused(["study", "run", spec, "--out", here / "notes"], "not a study folder", "todo.txt")
    other = here / "other"
    other.mkdir()
    (other / "plan.json").write_text(json.dumps({"name": "other", "datasets": {}, "runs": []}))
    refused(["study", "run", spec, "--out", other], "holds study 'other'", "not 'tiny'")
    refused(["study", "plan", spec, "--out", other], "holds study 'other'")


def test_study_needing_more_disk_than_there_is(refused, here):
    big = BASE.replace("resolution: 32", "resolution: 4096").replace(
        "n_train: 64", "n_train: 9000000"
    )
    spec = write(here, big.replace("sigma: 0.0625", "sigma: 0.01"))
    refused(["study", "run", spec], "of disk", "lower n_train")


def test_too_many_runs(refused, here):
    sizes = ", ".join(str(n) for n in range(1, 33))
    seeds = ", ".join(str(n) for n in range(4000))
    spec = BASE.replace("sizes: [4, 8]", f"sizes: [{sizes}]").replace(
        "seeds: [0]", f"seeds: [{seeds}]"
    )
    refused(["study", "plan", write(here, spec)], "study.yaml:10:", "runs (at most 100,000)")


def test_demo_options(refused, here):
    (here / "file").write_text("mine")
    refused(["demo", "--out", here / "file", "--quiet"], "is not a folder")
    refused(["demo", "--workers", "0", "--out", here / "d", "--quiet"], "--workers")
    refused(["demo", "--workers", "-1", "--out", here / "d", "--quiet"], "--workers")


# -- status / results / report ------------------------------------------------------------------
def plan_dir(root: Path, plan: object | None = None) -> Path:
    """A study folder holding ``plan`` (default: a small valid one with one finished run)."""
    root.mkdir(parents=True, exist_ok=True)
    if plan is None:
        labels = dict(task="down", family="poisson", task_low=5.0, task_high=10.0,
                      method="scratch", init="scratch", mode="full", model="fno-micro",
                      seed=0, n_train=4)  # fmt: skip
        plan = {
            "name": "tiny",
            "datasets": {"down": {"family": "poisson", "low": 5.0, "high": 10.0}},
            "runs": [
                {"id": "d1", "kind": "data", "labels": {"name": "down"}, "depends": []},
                {"id": "r1", "kind": "downstream", "labels": labels, "depends": ["d1"]},
            ],
        }
    (root / "plan.json").write_text(plan if isinstance(plan, str) else json.dumps(plan))
    return root


def record(root: Path, content: object, run_id: str = "r1") -> None:
    (root / "runs" / run_id).mkdir(parents=True, exist_ok=True)
    text = content if isinstance(content, str) else json.dumps(content)
    (root / "runs" / run_id / "record.json").write_text(text)


GOOD_RECORD = {"status": "completed", "test": {"rel_l2": 0.1, "mse": 0.01}, "val": {"rel_l2": 0.1}}


@pytest.mark.parametrize("command", [["study", "status"], ["results"], ["report"]])
def test_not_a_study_folder(refused, here, command):
    refused([*command, here], "not a study directory", "no plan.json")
    refused([*command, here / "missing"], "not a study directory")
    (here / "a-file").write_text("x")
    refused([*command, here / "a-file"], "not a study directory")


def one_run(**run) -> dict:
    """A plan with one run: a downstream run with id "a" and no labels, as changed by ``run``."""
    return {
        "name": "t",
        "datasets": {},
        "runs": [{"id": "a", "kind": "downstream", "labels": {}, **run}],
    }


GARBLED_PLANS = [
    ("not-json", "{not json", ["plan.json is not valid JSON", "line 1"]),
    ("a-list", "[]", ["plan.json", "JSON object, got list"]),
    ("no-runs", {"name": "tiny", "datasets": {}}, ["field 'runs'", "JSON list"]),
    ("name-escape", {"name": "../x", "datasets": {}, "runs": []}, ["field 'name'", "plain name"]),
    ("dataset-escape", {"name": "t", "datasets": {"../d": {"family": "poisson"}}, "runs": []},
     ["datasets", "plain name"]),
    ("dataset-no-family", {"name": "t", "datasets": {"d": {}}, "runs": []},
     ["datasets.d", "family"]),
    ("run-not-object", {"name": "t", "datasets": {}, "runs": [5]}, ["runs[0]", "JSON object"]),
    ("run-id-escape", one_run(id="../../x"), ["runs[0].id", "plain name"]),
    ("run-id-number", one_run(id=7), ["runs[0].id"]),
    ("run-kind", one_run(kind="magic"), ["runs[0].kind"]),
    ("labels-list", one_run(labels=[]), ["runs[0].labels"]),
    ("label-task-number", one_run(labels={"task": 5}), ["runs[0].labels.task", "text"]),
    ("label-n-text", one_run(labels={"n_train": "8"}), ["runs[0].labels.n_train", "number"]),
    ("stage-without-name", one_run(kind="pretrain", labels={"task": "d"}), ["labels.stage"]),
    ("depends-number", one_run(depends=3), ["runs[0].depends"]),
]  # fmt: skip


@pytest.mark.parametrize("command", [["study", "status"], ["results"], ["report"]])
@pytest.mark.parametrize(
    "plan,needles", [c[1:] for c in GARBLED_PLANS], ids=[c[0] for c in GARBLED_PLANS]
)
def test_garbled_plan(refused, here, command, plan, needles):
    root = plan_dir(here / "s", plan)
    refused([*command, root], *needles)


GARBLED_RECORDS = [
    ("not-json", '{"status": "compl', ["record.json is not valid JSON", "delete"]),
    ("empty", "", ["record.json is not valid JSON"]),
    ("a-list", "[1, 2]", ["record.json", "JSON object, got list"]),
    ("no-status", {"test": {}}, ["field 'status'"]),
    ("test-text", {"status": "completed", "test": "good"}, ["field 'test'"]),
    ("rel-l2-text", {"status": "completed", "test": {"rel_l2": "low"}}, ["test.rel_l2", "number"]),
    ("lr-text", {**GOOD_RECORD, "selected_lr": "1e-3"}, ["selected_lr"]),
]


@pytest.mark.parametrize("command", [["study", "status"], ["results"], ["report"]])
@pytest.mark.parametrize(
    "content,needles", [c[1:] for c in GARBLED_RECORDS], ids=[c[0] for c in GARBLED_RECORDS]
)
def test_garbled_record(refused, here, command, content, needles):
    root = plan_dir(here / "s")
    record(root, content)
    refused([*command, root], *needles)


def test_garbled_record_in_study_plan_and_run(refused, here):
    spec = write(here, BASE)
    root = here / "tiny"
    study = load_study(spec)
    run = next(r for r in study.runs if r.kind == "pretrain")
    plan_dir(root, {"name": "tiny", "datasets": {}, "runs": []})
    record(root, "{garbled", run.id)
    refused(["study", "plan", spec], "record.json is not valid JSON", run.id)
    refused(["study", "run", spec], "record.json is not valid JSON", run.id)
    (root / "plan.json").write_text("{garbled")
    refused(["study", "run", spec], "plan.json is not valid JSON")


def test_garbled_dataset_card_in_report(refused, here):
    root = plan_dir(here / "s")
    record(root, GOOD_RECORD)
    (root / "data" / "down").mkdir(parents=True)
    (root / "data" / "down" / "card.json").write_text("{bad")
    refused(["report", root], "card.json is not valid JSON")
    (root / "data" / "down" / "card.json").write_text(json.dumps({"family": "poisson"}))
    refused(["report", root], "card.json", "lacks the field 'parameter'")


def test_results_csv_target(refused, here, capsys):
    root = plan_dir(here / "s")
    record(root, GOOD_RECORD)
    refused(["results", root, "--csv", here / "missing" / "r.csv"], "does not exist", "mkdir -p")
    refused(["results", root, "--csv", here], "is a folder")
    (here / "f").write_text("x")
    refused(["results", root, "--csv", here / "f" / "r.csv"], "is a file")
    from pdefm.cli import main

    assert main(["results", str(root), "--csv", str(here / "r.csv")]) == 0  # the folder exists
    assert (here / "r.csv").read_text().startswith("run_id,")


def test_report_out_is_a_file(refused, here):
    root = plan_dir(here / "s")
    record(root, GOOD_RECORD)
    (here / "f").write_text("x")
    refused(["report", root, "--out", here / "f"], "report folder", "is not a folder")
    refused(["report", root, "--out", here / "f" / "sub"], "is a file")
    (root / "report").write_text("in the way")
    refused(["report", root], "report folder", "is not a folder")


def test_status_results_report_of_a_valid_plan(here, capsys):
    from pdefm.cli import main

    root = plan_dir(here / "s")
    record(root, GOOD_RECORD)
    assert main(["study", "status", str(root)]) == 0
    assert "1 completed" in capsys.readouterr().out
    assert main(["results", str(root)]) == 0
    assert "test rel L2 0.1" in capsys.readouterr().out
    record(root, {"status": "failed", "test": None})  # a failed run: no metrics, still a row
    assert main(["results", str(root)]) == 0
    assert "test rel L2 nan" in capsys.readouterr().out
    record(root, {"status": "completed", "test": {"rel_l2": None}})
    assert main(["results", str(root)]) == 0
    assert "test rel L2 -" in capsys.readouterr().out


# -- helpers ------------------------------------------------------------------------------------
def test_output_path_helpers(tmp_path):
    assert check_output_file(tmp_path / "x.csv", "f") == tmp_path / "x.csv"
    assert check_output_dir(tmp_path / "new" / "deeper", "d") == tmp_path / "new" / "deeper"
    with pytest.raises(PdefmError, match="does not exist"):
        check_output_file(tmp_path / "no" / "x.csv", "f")
    (tmp_path / "file").write_text("x")
    with pytest.raises(PdefmError, match="its parent .* is a file"):
        check_output_dir(tmp_path / "file" / "a" / "b", "d")


def test_study_run_from_its_own_copy_keeps_it(tmp_path):
    spec = write(tmp_path, BASE)
    _copy_spec(spec, spec)  # `pdefm study run DIR/study.yaml` reruns from the copy
    assert spec.read_text() == BASE
    _copy_spec(spec, tmp_path / "copy.yaml")
    assert (tmp_path / "copy.yaml").read_text() == BASE
