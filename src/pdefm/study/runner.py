"""Running a study: what is missing, in dependency order (data -> pre-train -> downstream),
resumable, one process or several (``workers``), or as tasks on a Ray cluster
(``executor="ray"``, see ``ray_executor``).

Layout of a study directory::

    study.yaml      the spec as run        plan.json   every run: id, kind, labels, depends
    provenance.json one entry per `study run`: command, date, versions, commit, machine
    data/NAME/      datasets               runs/ID/    one training / evaluation run each
    report/         written by `pdefm report`

A run is done when its dataset card, or its record with status completed / failed, exists.
Each run is itself resumable (``generate_dataset``, ``train``), so a study killed at any moment
continues where it stopped and no run is recorded twice. A directory lock keeps a second
``study run`` out of the same directory.
"""

from __future__ import annotations

import shutil
import sys
from collections.abc import Callable
from contextlib import nullcontext
from pathlib import Path

from tqdm.auto import tqdm

from pdefm.checks import check_disk, check_int, check_output_dir
from pdefm.data.io import LOCK_NAME, directory_lock, write_json_atomic
from pdefm.errors import PdefmError
from pdefm.study.doubling import plan_doublings
from pdefm.study.execute import Executor, RunSummary, RunTask
from pdefm.study.executors import ExecutorChoice, LocalPool, RayCluster
from pdefm.study.provenance import record_invocation
from pdefm.study.refine import plan_refinements
from pdefm.study.spec import Study, StudyMixture, StudyRun, load_study, run_config
from pdefm.study.store import load_plan
from pdefm.train.record import read_record

PHASES = ("data", "pretrain", "downstream")
MAX_REFINE = 64  # a larger budget factor in one go is more likely a typo than a plan
CHECK_ROUNDS = 3  # savings-check rounds at most (a crossing moves once or twice, not forever)


def study_dir_for(study: Study, out: str | Path | None) -> Path:
    """``out``, or a directory named after the study in the current directory."""
    return Path(out) if out else Path(study.name)


def run_status(run: StudyRun, root: Path) -> str:
    """ "done", "failed", "partial" (started, resumable) or "todo"."""
    if run.kind == "data":
        name = run.labels["name"]
        if (root / "data" / name / "card.json").is_file():
            return "done"
        return "partial" if (root / "data" / name).exists() else "todo"
    record = read_record(root / "runs" / run.id / "record.json")  # checked: one line if damaged
    if record is None:
        return "partial" if (root / "runs" / run.id).exists() else "todo"
    return {"completed": "done", "failed": "failed"}.get(record.status, "partial")


def plan_lines(study: Study, root: Path) -> list[str]:
    """One line per run: status, kind, labels."""
    lines = []
    for run in study.runs:
        labels = " ".join(f"{k}={v}" for k, v in run.labels.items())
        lines.append(f"{run_status(run, root):8s} {run.kind:10s} {run.id}  {labels}")
    counts = {
        s: sum(run_status(r, root) == s for r in study.runs)
        for s in ("done", "failed", "partial", "todo")
    }
    lines.append(f"{len(study.runs)} runs: " + ", ".join(f"{v} {k}" for k, v in counts.items()))
    return lines


def run_study(
    path: str | Path,
    out: str | Path | None = None,
    *,
    executor: ExecutorChoice | None = None,
    progress: bool = True,
    refine: int | None = None,
    check_savings: Callable[[Path], set[str]] | None = None,
    command: str | None = None,
) -> Path:
    """Run every missing run of the study in ``path``; returns the study directory.

    ``executor`` says where runs execute: ``LocalPool(workers)`` (the default, one worker) or
    ``RayCluster(address, cpus_per_run, gpus_per_run)`` (see ``pdefm.study.executors``;
    ``choose_executor`` builds one from command-line flags).

    ``command`` is how this was asked for (recorded in provenance.json; default: this
    process's command line). ``refine`` (a factor >= 2): afterwards, rerun every flagged
    downstream run (budget-limited, or with its learning rate at the edge of those tried)
    with its budget multiplied by ``refine`` (see ``pdefm.study.refine``); the report then
    uses the refined results. ``check_savings`` (given root, the ids of the runs the
    study's savings factors rest on; ``pdefm.report.analysis.study_runs_to_double``): then rerun
    each of those runs with twice the budget (``pdefm.study.doubling``), and again for runs a
    moved crossing needs, up to ``CHECK_ROUNDS`` times.

    Every check (options, the study file, the folder, free disk, Ray being installed) comes
    before the study folder is created: a refused study leaves nothing behind.
    """
    executor = LocalPool() if executor is None else executor
    if not isinstance(executor, (LocalPool, RayCluster)):
        raise PdefmError(
            f"executor must be a LocalPool or RayCluster, got {type(executor).__name__}"
        )
    executor.check()
    if refine is not None:
        check_int(refine, "--refine", minimum=2, maximum=MAX_REFINE)
    study = load_study(path)
    for warning in study.warnings:
        print(f"warning: {warning}", file=sys.stderr)
    root = study_dir_for(study, out)
    check_study_dir(root, study)
    status = {r.id: run_status(r, root) for r in study.runs}  # a damaged record: refused now
    missing = {r.labels["name"] for r in study.runs if r.kind == "data" and status[r.id] != "done"}
    check_disk(
        root,
        study.data_bytes(missing),
        f"the datasets of study {study.name}",
        "free some space, put the study on a larger disk (--out), or lower n_train / resolution",
    )
    root.mkdir(parents=True, exist_ok=True)
    busy = f"study {root} is being run by another process; wait for it or use `pdefm study status`"
    with directory_lock(root, busy):
        _run_locked(study, root, executor, progress, refine, check_savings, command)
    return root


def _run_locked(
    study: Study, root: Path, executor, progress, refine, check_savings, command
) -> None:
    """The study's missing runs, phase by phase and wave by wave, then its refinements, then
    the reruns of the savings check."""
    _copy_spec(study.path, root / "study.yaml")
    write_plan(study, root)
    # again under the lock: another runner may have finished runs since the check above
    todo = [r for r in study.runs if run_status(r, root) not in ("done", "failed")]
    # a finished study whose checks are all run has nothing to do (the demo's second call)
    checking = check_savings is not None and bool(
        todo or plan_doublings(study, root, check_savings(root))
    )
    extra = refine is not None or checking
    if todo or extra:  # provenance of runs: a call with nothing to do adds none
        record_invocation(root, command)
    bar = tqdm(
        total=len(study.runs),
        initial=len(study.runs) - len(todo),
        unit="run",
        desc=f"study {study.name}",
        disable=not progress,
        file=sys.stderr,
    )
    # nothing left to run: no workers to spawn, no cluster to connect to
    pool = executor.start(not bar.disable) if todo or extra else nullcontext()
    with bar, pool as runs_with:
        for phase in PHASES:
            batch = _runnable([r for r in todo if r.kind == phase], study, root, bar)
            for wave in _waves(batch):
                _run_wave(runs_with, study, wave, root, bar)
        if refine is not None:
            more = plan_refinements(study, root, refine)
            bar.write(f"  refining {len(more)} flagged run(s): budget x {refine}")
            bar.total += len(more)
            bar.refresh()
            _run_wave(runs_with, study, more, root, bar)
        if checking:
            _check_rounds(runs_with, study, root, bar, check_savings)


def _check_rounds(executor, study: Study, root: Path, bar, check_savings) -> None:
    """Rerun at twice the budget the runs the savings factors rest on; a crossing that moved
    at 2B may rest on other runs, so ask again until nothing new is needed."""
    for _ in range(CHECK_ROUNDS):
        more = plan_doublings(study, root, check_savings(root))
        if not more:
            return
        bar.write(f"  savings check: {len(more)} run(s) at twice the budget")
        bar.total += len(more)
        bar.refresh()
        _run_wave(executor, study, more, root, bar)


def check_study_dir(root: Path, study: Study) -> None:
    """Refuse a study folder that is a file, lies under a file, or holds something else (a
    folder of other files, or another study's plan), before anything is written to it."""
    check_output_dir(root, "the study folder")
    if not root.is_dir():
        return
    if (root / "plan.json").exists():
        name = load_plan(root)["name"]  # checked: a damaged plan is one line
        if name != study.name:
            raise PdefmError(
                f"{root} holds study {name!r}, not {study.name!r}; give --out another folder "
                "(or keep the study's name)"
            )
        return
    # a folder this runner made before it could write the plan holds at most these
    other = sorted(p.name for p in root.iterdir() if p.name not in (LOCK_NAME, "study.yaml"))
    if other:
        raise PdefmError(
            f"{root} is not empty and is not a study folder (no plan.json; it holds "
            f"{other[0]!r}); give --out a new or empty folder"
        )


def _copy_spec(source: Path, target: Path) -> None:
    """The study file as run; nothing to do when the study is run from its own copy."""
    if target.exists() and target.samefile(source):
        return
    shutil.copyfile(source, target)


def _runnable(runs: list[StudyRun], study: Study, root: Path, bar) -> list[StudyRun]:
    """Drop (and report) runs whose pre-training stage failed: they cannot start, and the
    rest of the study still can. They stay "todo" and run once the stage is fixed."""
    by_id = {r.id: r for r in study.runs}
    failed = {d for r in runs for d in r.depends if run_status(by_id[d], root) == "failed"}
    for dep in sorted(failed):
        n = sum(dep in r.depends for r in runs)
        bar.write(
            f"  skipped {n} run(s): {by_id[dep].kind} {by_id[dep].labels} failed "
            f"(see {root / 'runs' / dep / 'record.json'})"
        )
        bar.update(n)
    return [r for r in runs if not set(r.depends) & failed]


def _waves(runs: list[StudyRun]) -> list[list[StudyRun]]:
    """Split a phase's runs so that none runs before another of the phase it depends on
    (a mixture dataset after its members); order is kept within a wave."""
    waves, left = [], list(runs)
    while left:
        ids = {r.id for r in left}
        wave = [r for r in left if not ids & set(r.depends)] or left
        waves.append(wave)
        left = [r for r in left if r not in wave]
    return waves


def write_plan(study: Study, root: Path) -> None:
    plan = {
        "name": study.name,
        "datasets": {n: s.to_dict() for n, (s, _) in study.datasets.items()},
        "runs": [
            {"id": r.id, "kind": r.kind, "labels": r.labels, "depends": list(r.depends)}
            for r in study.runs
        ],
    }
    write_json_atomic(root / "plan.json", plan)


def task_for(study: Study, run: StudyRun, root: Path) -> RunTask:
    """The run resolved for an executor: a dataset spec and its folder, or a RunConfig."""
    if run.kind != "data":
        config = run_config(run, root, machine=study.machine)
        return RunTask(run.id, run.kind, run.labels, root, config=config)
    name = run.labels["name"]
    spec, drop = study.datasets[name]
    if isinstance(spec, StudyMixture):
        spec = spec.mixture_spec(root / "data")
    return RunTask(
        run.id, run.kind, run.labels, root, out=root / "data" / name, dataset=spec,
        drop_unsampleable=drop,
    )  # fmt: skip


def _run_wave(executor: Executor, study: Study, runs: list[StudyRun], root: Path, bar) -> None:
    """Carry out ``runs`` (independent of each other) and report each as it finishes."""
    if not runs:
        return
    if getattr(executor, "needs_absolute_paths", False):
        root = root.resolve()

    def done(task: RunTask, summary: RunSummary) -> None:
        bar.write(summary.line(task))
        bar.update(1)

    executor.run([task_for(study, run, root) for run in runs], done)
