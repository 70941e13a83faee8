"""Where a study's numbers came from: every ``study run`` on a folder appends one entry to
``provenance.json`` (command, date, pdefm / torch / Python versions, the pdefm source commit,
machine), so a report can state how its runs were produced without the shell history.

No torch import at module level: the report reads the file with numpy and matplotlib only.
"""

from __future__ import annotations

import datetime as dt
import json
import platform
import shlex
import subprocess
import sys
from importlib import metadata
from pathlib import Path

from pdefm import __version__
from pdefm.data.io import write_json_atomic

PROVENANCE = "provenance.json"
GIT_TIMEOUT_S = 5


def source_commit() -> str | None:
    """The git commit of the pdefm source in use (with ``+dirty`` when it has uncommitted
    changes), or None when pdefm is not run from a git checkout (an installed wheel)."""
    here = Path(__file__).resolve().parent

    def git(*args: str) -> str | None:
        try:
            done = subprocess.run(
                ["git", "-C", str(here), *args],
                capture_output=True,
                text=True,
                timeout=GIT_TIMEOUT_S,
            )
        except (OSError, subprocess.SubprocessError):
            return None
        return done.stdout.strip() if done.returncode == 0 else None

    commit = git("rev-parse", "HEAD")
    if not commit:
        return None
    dirty = git("status", "--porcelain", "--untracked-files=no", "--", str(here.parent))
    return commit + ("+dirty" if dirty else "")


def _torch_version() -> str | None:
    try:
        return metadata.version("torch")
    except metadata.PackageNotFoundError:
        return None


def invocation(command: str | None = None) -> dict:
    """This process as a provenance entry; ``command`` defaults to its command line."""
    if command is None:
        argv = list(sys.argv)
        if argv:
            argv[0] = Path(argv[0]).name  # `pdefm`, not the venv's full path to it
        command = shlex.join(argv)
    return {
        "command": command,
        "started": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "pdefm_version": __version__,
        "commit": source_commit(),
        "torch_version": _torch_version(),
        "python": platform.python_version(),
        "machine": f"{platform.system()} {platform.machine()}",
    }


def record_invocation(root: Path, command: str | None = None) -> dict:
    """Append this process to ``root/provenance.json`` (atomically; the caller holds the study
    lock, so no two runners append at once). Returns the entry."""
    entries = load_provenance(root)
    entry = invocation(command)
    write_json_atomic(root / PROVENANCE, {"invocations": [*entries, entry]})
    return entry


def load_provenance(root: str | Path) -> list[dict]:
    """The entries of ``root/provenance.json``; none for a study run before the file existed
    or whose file is unreadable (provenance is informative: it never blocks a study)."""
    path = Path(root) / PROVENANCE
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return []
    entries = data.get("invocations") if isinstance(data, dict) else None
    if not isinstance(entries, list):
        return []
    return [e for e in entries if isinstance(e, dict)]
