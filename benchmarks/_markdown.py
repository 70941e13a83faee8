"""Shared by the benchmark scripts: replace one ``## `` section of BENCHMARKS.md in place."""

from __future__ import annotations

import datetime as dt
import shlex
import subprocess
import sys
from pathlib import Path

FILE_HEADER = """# pdefm benchmarks

Figures here are measured, not estimated, by the scripts in `benchmarks/`; each section names the
command, machine and date that produced it. Compare figures only within one run (one section):
the machines are shared and noisy, so absolute rates move from run to run, which is why each
script interleaves the measurements it compares.
"""


def replace_section(text: str, section: str) -> str:
    """``text`` with the markdown section titled like ``section``'s first line replaced by it
    (or appended); sections run from a ``## `` heading to the next one, outside code fences."""
    title = section.splitlines()[0].strip()
    lines = text.splitlines()
    start = end = None
    in_fence = False
    for i, line in enumerate(lines):
        if line.lstrip().startswith("```"):
            in_fence = not in_fence
        if in_fence or not line.startswith("## "):
            continue
        if start is None and line.strip() == title:
            start = i
        elif start is not None:
            end = i
            break
    new = section.rstrip("\n").splitlines()
    if start is None:
        head = "\n".join(lines).rstrip("\n")
        return f"{head}\n\n" + "\n".join(new) + "\n"
    tail = lines[end:] if end is not None else []
    body = lines[:start] + new + ([""] if tail else []) + tail
    return "\n".join(body).rstrip("\n") + "\n"


def add_write_option(parser, title: str) -> None:
    """The benchmarks' ``--write PATH`` option: the markdown file to put the section in."""
    parser.add_argument(
        "--write",
        type=Path,
        default=None,
        metavar="PATH",
        help=f"replace (or add) the section '{title}' in this markdown file",
    )


def publish(text: str, write: Path | None) -> None:
    """Print a benchmark's section and, with ``--write PATH``, put it into that file."""
    print()
    print(text)
    if write is not None:
        write_section(write, text)
        print(f"wrote section '{text.splitlines()[0]}' to {write}")


def write_section(path: Path, section: str) -> None:
    """Replace or add the section in ``path``, creating the file with a header if needed."""
    text = path.read_text() if path.is_file() else FILE_HEADER
    path.write_text(replace_section(text, section))


def git_commit() -> str:
    """Short commit of the working tree, '+dirty' if it has changes; 'unknown' outside git."""
    try:
        out = subprocess.run(
            ["git", "describe", "--always", "--dirty=+dirty"],
            cwd=Path(__file__).resolve().parent,
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        )
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return out.stdout.strip() or "unknown"


def section(title: str, table: str, notes: list[str], machine: str, started: dt.datetime) -> str:
    """A benchmark section: title, table, notes, then the command, machine and date that
    produced it (the command is this process's own command line)."""
    command = "python " + shlex.join(sys.argv)
    return "\n".join(
        [
            title,
            "",
            table,
            "",
            *(f"- {note}" for note in notes),
            "",
            f"Command: `{command}`  ",
            f"Machine: {machine}  ",
            f"Date: {started.isoformat(timespec='seconds')}",
            "",
        ]
    )
