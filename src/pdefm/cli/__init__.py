"""The `pdefm` command. Heavy imports (torch) happen inside the subcommands that need them, so
`pdefm --help` and `pdefm inspect` stay fast.

One module per group of commands: ``data`` (generate, inspect, mix), ``own_data`` (import,
export), ``train`` (train, evaluate) and ``study`` (study, results, report, demo); each adds
its parsers (``_add_*``) and runs them (``_run_*``)."""

from __future__ import annotations

import argparse
import os
import shlex
import sys
from collections.abc import Sequence

from pdefm import __version__
from pdefm.cli.data import add_generate, add_inspect, add_mix
from pdefm.cli.own_data import add_export, add_import
from pdefm.cli.study import (
    add_demo,
    add_report,
    add_results,
    add_study,
    fresh_report,
)
from pdefm.cli.train import add_evaluate, add_train
from pdefm.errors import PdefmError

__all__ = ["fresh_report", "build_parser", "main"]


class _Parser(argparse.ArgumentParser):
    """argparse with pdefm's error contract: one line, ``error: ...``, exit code 2."""

    def error(self, message: str):  # type: ignore[override]
        self.exit(2, f"error: {self.prog}: {message}; see `{self.prog} --help`\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="pdefm",
        description="Pre-train neural operators on PDE families, adapt them with few examples, "
        "and measure how that transfer scales.",
    )
    parser.add_argument("--version", action="version", version=f"pdefm {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    add_generate(sub)
    add_inspect(sub)
    add_import(sub)
    add_export(sub)
    add_mix(sub)
    add_train(sub)
    add_evaluate(sub)
    add_study(sub)
    add_results(sub)
    add_report(sub)
    add_demo(sub)
    _add_threads(sub)
    return parser


THREADS_HELP = (
    "torch CPU threads per process (default: the cores other processes leave free, shared "
    "among the workers; or PDEFM_THREADS / OMP_NUM_THREADS if set)"
)


def _add_threads(sub) -> None:
    """``--threads`` on every command that computes with torch (see pdefm.threads)."""
    for name in ("generate", "train", "evaluate", "demo"):
        sub.choices[name].add_argument("--threads", type=int, metavar="N", help=THREADS_HELP)
    study_verbs = next(
        a for a in sub.choices["study"]._actions if isinstance(a, argparse._SubParsersAction)
    )
    study_verbs.choices["run"].add_argument("--threads", type=int, metavar="N", help=THREADS_HELP)


def main(argv: Sequence[str] | None = None) -> int:
    from pdefm.threads import prepare_environment

    prepare_environment()  # before anything imports torch: idle threads sleep, never spin
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # --help, --version, or a one-line usage error (_Parser.error)
        return int(exc.code or 0)
    args.command_line = shlex.join(["pdefm", *(sys.argv[1:] if argv is None else argv)])
    try:
        _set_threads(args)
        return args.run(args)
    except PdefmError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted: rerun the same command to resume", file=sys.stderr)
        return 130


def _set_threads(args: argparse.Namespace) -> None:
    """Apply ``--threads`` (or the automatic choice) to this process; study runs hand an
    explicit count to their worker processes through ``PDEFM_THREADS``."""
    if not hasattr(args, "threads"):
        return
    from pdefm.threads import ENV_THREADS, apply_threads, choose_threads

    if args.command in ("generate", "train", "evaluate"):
        apply_threads(choose_threads(args.threads))
    elif args.threads is not None:  # study run, demo: the runner and its workers read it
        os.environ[ENV_THREADS] = str(choose_threads(args.threads))
