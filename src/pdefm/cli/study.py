"""`pdefm study plan | run | status`, `results`, `report` and `demo`."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # the CLI imports its commands' modules lazily, to start fast
    from pdefm.study.row import ResultRow


def add_study(sub) -> None:
    p = sub.add_parser(
        "study",
        help="plan, run or check a scaling/transfer study (YAML)",
        description="A study file declares datasets, pre-training stages and a downstream grid "
        "(tasks x sizes x inits x modes x models x lrs x seeds); it expands into runs whose ids "
        "are hashes of their configs. `run` does what is missing in dependency order; rerun it "
        "after an interruption to continue. Examples: studies/cpu/*.yaml, studies/paper/*.yaml.",
    )
    verbs = p.add_subparsers(dest="verb", metavar="VERB", required=True)
    plan = verbs.add_parser("plan", help="print the expanded runs and what is already done")
    plan.add_argument("file", help="study YAML")
    plan.add_argument("--out", help="study directory (default: ./NAME, the study's name)")
    plan.add_argument(
        "--estimate",
        action="store_true",
        help="also time one training step of each model, grid and batch the study uses and "
        "print how long its training should take here (a few seconds to measure)",
    )
    plan.add_argument(
        "--workers",
        type=int,
        default=1,
        help="with --estimate: the --workers you will run with (default 1)",
    )
    plan.set_defaults(run=_run_study_plan)
    run = verbs.add_parser("run", help="run what is missing (data -> pre-train -> downstream)")
    run.add_argument("file", help="study YAML")
    run.add_argument("--out", help="study directory (default: ./NAME, the study's name)")
    run.add_argument(
        "--workers", type=int, default=1, help="runs side by side in separate processes (default 1)"
    )
    run.add_argument("--quiet", action="store_true", help="no progress bar")
    run.add_argument(
        "--refine",
        type=int,
        nargs="?",
        const=2,
        metavar="FACTOR",
        help="then rerun the downstream runs the report flags (validation still improving at "
        "the end, or the chosen lr at the edge of those tried) with FACTOR times the budget "
        "(default 2) and the lr grid around the chosen rate; the report uses the new results",
    )
    run.add_argument(
        "--check-savings",
        action="store_true",
        help="then rerun, with twice the budget (same rate, seeds and subsets), every run a "
        "savings factor rests on (scratch at the target's N, fine-tuning at the sizes around "
        "its crossing) and print each factor at both budgets with its verdict: settled (it "
        "moved by at most 15%% or its seed interval, on the same side of 1) or budget-bound "
        "(then reports print it as a range)",
    )
    _add_ray_options(run)
    run.set_defaults(run=_run_study_run)
    status = verbs.add_parser(
        "status",
        help="summarise a study directory: runs by state, refinements by budget and state, "
        "and the savings check's reruns",
    )
    status.add_argument("directory", help="study directory (holds plan.json)")
    status.set_defaults(run=_run_study_status)


def _add_ray_options(run) -> None:
    ray = run.add_argument_group(
        'Ray cluster (pip install "pdefm[ray]"; docs/cluster.md)',
        "every run becomes a Ray task; a task whose worker dies is retried and resumes; the "
        "study directory must be on storage every node sees under the same path",
    )
    ray.add_argument(
        "--executor",
        choices=("local", "ray"),
        default="local",
        help="local: processes on this machine (--workers); ray: tasks on a Ray cluster",
    )
    ray.add_argument(
        "--address",
        help="Ray cluster: HOST:PORT, or auto (one started with `ray start`); default: "
        "RAY_ADDRESS, else a cluster started on this machine, else a new local one",
    )
    ray.add_argument(
        "--ray-cpus-per-run", type=float, metavar="N", help="CPUs each run asks for (default 1)"
    )
    ray.add_argument(
        "--ray-gpus-per-run",
        type=float,
        metavar="N",
        help="GPUs each training run asks for (default 1 if the cluster has GPUs, else 0)",
    )


def add_results(sub) -> None:
    p = sub.add_parser(
        "results",
        help="a study's run records as one table",
        description="Load every run record of a study directory into one table "
        "(test metrics of the learning rate chosen on validation).",
    )
    p.add_argument("directory", help="study directory")
    p.add_argument("--csv", help="write the table to this CSV file")
    p.set_defaults(run=_run_results)


def add_report(sub) -> None:
    p = sub.add_parser(
        "report",
        help="write a study's report (html, markdown, figures, csv)",
        description="Write DIR/report/report.html (self-contained), report.md, "
        "the PNG figures and results.csv for a study directory.",
    )
    p.add_argument("directory", help="study directory")
    p.add_argument("--out", help="report directory (default DIR/report)")
    p.set_defaults(run=_run_report)


def add_demo(sub) -> None:
    p = sub.add_parser(
        "demo",
        help="run the embedded demo study end to end on CPU",
        description="Pre-train a small FNO (fno-micro, 16 x 16 grids) on Poisson e in [1, 5], "
        "then fine-tune it and train from scratch on e in [5, 10] with 4 to 32 examples, three "
        "seeds, 800 epochs a run and the learning rate searched on validation; write the "
        "report and print the headline (under 5 minutes on 2 CPU cores). A second call "
        "returns at once from the cache.",
    )
    p.add_argument("--out", default="pdefm-demo", help="demo directory (default pdefm-demo)")
    p.add_argument(
        "--workers",
        type=int,
        help="runs side by side (default: one per CPU core, at most 4)",
    )
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(run=_run_demo)


def _run_study_plan(args: argparse.Namespace) -> int:
    from pdefm.checks import check_int
    from pdefm.study.estimate import estimate_seconds, plan_work, summary_lines
    from pdefm.study.runner import check_study_dir, plan_lines, study_dir_for
    from pdefm.study.spec import load_study

    check_int(args.workers, "--workers", minimum=1)
    study = load_study(args.file)
    root = study_dir_for(study, args.out)
    check_study_dir(root, study)  # the folder `study run` would refuse; plan writes nothing
    print(f"study {study.name} -> {root}")
    for warning in study.warnings:
        print(f"warning: {warning}")
    print("\n".join(plan_lines(study, root)))
    works = plan_work(study)
    seconds = None
    if args.estimate:  # timed with the threads each of the --workers processes would get
        from pdefm.threads import apply_threads, choose_threads

        apply_threads(choose_threads(workers=args.workers))
        seconds = estimate_seconds(works)
    print("\n".join(summary_lines(works, seconds, args.workers)))
    return 0


def _run_study_run(args: argparse.Namespace) -> int:
    from pdefm.study.executors import choose_executor
    from pdefm.study.runner import run_study

    executor = choose_executor(
        args.executor, args.workers, args.address, args.ray_cpus_per_run, args.ray_gpus_per_run
    )
    root = run_study(
        args.file,
        args.out,
        executor=executor,
        progress=not args.quiet,
        refine=args.refine,
        check_savings=_savings_runs() if args.check_savings else None,
        command=args.command_line,
    )
    if args.check_savings:
        _print_verdicts(root)
    print(f"study done: {root}; report it with: pdefm report {root}")
    return 0


def _savings_runs(scope: str = "all"):
    """The savings check's choice of runs (the report decides what a factor rests on):
    every factor of the savings table ("all") or the headline's alone ("headline")."""
    from functools import partial

    from pdefm.report.analysis import study_runs_to_double

    return partial(study_runs_to_double, scope=scope)


def _print_verdicts(root, scope: str = "all") -> None:
    """Each savings factor at the budget B and at 2B, its drift and verdict."""
    from pdefm.report.analysis import study_verdicts

    lines = study_verdicts(root, scope)
    print("savings check (S(B): as run; S(2B): the runs it rests on at twice the budget):")
    print("\n".join(f"  {line}" for line in lines) or "  no savings factor to check")


def _run_study_status(args: argparse.Namespace) -> int:
    from pdefm.study.doubling import doubling_progress
    from pdefm.study.refine import refinement_progress
    from pdefm.study.results import load_results

    rows = [r for r in load_results(args.directory) if r.check_of is None]  # counted below
    counts: dict[str, int] = {}
    for row in rows:
        counts[row.status] = counts.get(row.status, 0) + 1
    print(
        f"{args.directory}: {len(rows)} training/evaluation runs: "
        + ", ".join(f"{v} {k}" for k, v in sorted(counts.items()))
    )
    for factor, by_status in refinement_progress(args.directory).items():
        print(
            f"  refinements at budget x {factor} (--refine): {sum(by_status.values())}: "
            + ", ".join(f"{v} {k}" for k, v in sorted(by_status.items()))
        )
    checks = doubling_progress(args.directory)
    if checks:
        print(
            f"  savings-check reruns at twice the budget (--check-savings): "
            f"{sum(checks.values())}: " + ", ".join(f"{v} {k}" for k, v in checks.items())
        )
    return 0


def _run_results(args: argparse.Namespace) -> int:
    from pdefm.checks import check_output_file
    from pdefm.study.results import load_results, write_csv

    if args.csv:  # refused before the table is printed: a missing folder is not created
        check_output_file(args.csv, "--csv")
    rows = load_results(args.directory)
    for row in rows:
        err = row.test_rel_l2
        err = f"{err:.4g}" if isinstance(err, (int, float)) else "-"
        print(
            f"{row.status:9s} {row.task or '':14s} {row.method or '':9s} "
            f"{row.model or '':9s} n={row.n_train!s:5s} seed={row.seed} "
            f"lr={row.lr!s:7s} test rel L2 {err}"
        )
    if args.csv:
        print(f"wrote {write_csv(rows, args.csv)}")
    return 0


def _run_report(args: argparse.Namespace) -> int:
    from pathlib import Path

    from pdefm.checks import check_output_dir
    from pdefm.report import write_report
    from pdefm.report.samples import read_histories
    from pdefm.study.results import dataset_summaries, load_results, study_setup

    out = Path(args.out) if args.out else Path(args.directory) / "report"
    rows = load_results(args.directory)
    setup = {
        **study_setup(args.directory).to_json(),
        "command": getattr(args, "command_line", None),
    }
    check_output_dir(out, "the report folder (--out)")
    paths = write_report(
        rows,
        out,
        title=f"pdefm study {setup['name']}",
        datasets=dataset_summaries(args.directory),
        setup=setup,
        histories=read_histories(args.directory, rows),
        samples=_samples(args.directory, rows),
    )
    (out / "headline.txt").write_text(paths["headline"] + "\n")
    print(paths["headline"])
    print(f"report: {paths['html']} (and {paths['markdown']}, {paths['csv']})")
    return 0


def _samples(root: str, rows: list[ResultRow]) -> dict | None:
    """Test predictions of the first task that has fine-tune runs (else the first task)."""
    from pdefm.report.samples import predict_samples

    tasks = [r.task for r in rows if r.kind == "downstream" and r.status == "completed"]
    tuned = [r.task for r in rows if r.method == "finetune" and r.task in tasks]
    task = min(tuned or tasks, default=None)
    return None if task is None else predict_samples(root, rows, task)


def _run_demo(args: argparse.Namespace) -> int:
    from importlib.resources import as_file, files

    from pdefm.study.executors import LocalPool
    from pdefm.study.runner import run_study

    with as_file(files("pdefm.study") / "demo.yaml") as spec:
        root = run_study(
            spec,
            args.out,
            executor=LocalPool(_demo_workers(args.workers)),
            progress=not args.quiet,
            check_savings=_savings_runs("headline"),  # the headline quotes only a checked saving
            command=args.command_line,
        )
    _print_verdicts(root, "headline")
    cached = fresh_report(root)
    if cached is not None:
        print(cached)
        print(f"report: {root / 'report' / 'report.html'} (cached; delete it to rebuild)")
        return 0
    args.directory, args.out = str(root), None
    return _run_report(args)


def _demo_workers(workers: int | None) -> int:
    """--workers, or one per usable core up to 4 (the demo's model is too small for one run
    to use several cores well: side-by-side runs finish sooner)."""
    if workers is not None:
        return workers
    from pdefm.threads import usable_cores

    return max(1, min(4, usable_cores()))


def fresh_report(root) -> str | None:
    """The headline of ``root``'s report if it is newer than every run record."""
    headline, html = root / "report" / "headline.txt", root / "report" / "report.html"
    if not (headline.is_file() and html.is_file()):
        return None
    newest = max((p.stat().st_mtime for p in root.glob("runs/*/record.json")), default=0.0)
    return headline.read_text().strip() if html.stat().st_mtime >= newest else None
