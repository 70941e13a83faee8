"""Up-front validation shared by the CLI, the study files and the Python API (torch-free).

Every check raises ``PdefmError`` with one line that names the value, what is wrong with it and
how to fix it, before anything is written. Numbers are checked for type (``bool`` is not a
number here), finiteness and range; names and paths that come from users or from files are
checked to stay inside their folder; large requests are compared with the memory and disk the
machine has, and refused with the estimate.
"""

from __future__ import annotations

import json
import math
import os
import re
import shutil
from pathlib import Path, PurePosixPath, PureWindowsPath

from pdefm.errors import PdefmError

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._+=-]*$")
MAX_NAME = 128
# Windows cannot create these files in any folder, with or without an extension.
_WINDOWS_RESERVED = re.compile(r"^(con|prn|aux|nul|com[0-9]|lpt[0-9])(\..*)?$", re.IGNORECASE)


def check_int(
    value: object, name: str, *, minimum: int | None = None, maximum: int | None = None
) -> int:
    """``value`` as an int in [minimum, maximum]; bools, floats and strings are refused."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise PdefmError(f"{name} must be a whole number, got {value!r}")
    _check_bounds(value, name, minimum, maximum)
    return value


def check_count(value: object, name: str, maximum: int | None = None) -> int:
    """A number of samples: a whole number >= 1 (0 is refused, not taken as "default")."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise PdefmError(f"{name} must be a positive integer, got {value!r}")
    return check_int(value, name, maximum=maximum)


def check_float(
    value: object,
    name: str,
    *,
    minimum: float | None = None,
    maximum: float | None = None,
    positive: bool = False,
) -> float:
    """``value`` as a finite float in [minimum, maximum] (> 0 if ``positive``)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise PdefmError(f"{name} must be a number, got {value!r}")
    value = float(value)
    if not math.isfinite(value):
        raise PdefmError(f"{name} must be a finite number, got {value!r}")
    if positive and value <= 0:
        raise PdefmError(f"{name} must be > 0, got {value:g}")
    _check_bounds(value, name, minimum, maximum)
    return value


def _check_bounds(value: float, name: str, minimum: float | None, maximum: float | None) -> None:
    if minimum is not None and value < minimum:
        raise PdefmError(f"{name} must be >= {_show(minimum)}, got {_show(value)}")
    if maximum is not None and value > maximum:
        raise PdefmError(f"{name} must be <= {_show(maximum)}, got {_show(value)}")


def _show(x: float) -> str:
    """Whole numbers in full (100000000, not 1e+08), other numbers short (0.001)."""
    if isinstance(x, int) or (isinstance(x, float) and x.is_integer() and abs(x) < 1e15):
        return str(int(x))
    return f"{x:g}"


def check_choice(value: object, name: str, choices: tuple[str, ...]) -> str:
    """``value`` if it is one of ``choices``."""
    if not isinstance(value, str) or value not in choices:
        raise PdefmError(f"{name} must be one of {', '.join(choices)}, got {value!r}")
    return value


def check_name(value: object, what: str) -> str:
    """A plain file name for ``what`` (a study, dataset or stage): letters, digits and
    ``. _ + = -``, not starting with a dot, at most ``MAX_NAME`` characters. Such a name can
    never leave the folder it is joined to."""
    if not isinstance(value, str):
        raise PdefmError(f"{what} must be a text name, got {value!r}")
    if _WINDOWS_RESERVED.match(value):
        raise PdefmError(
            f"{what} {value!r} is a reserved device name on Windows; choose another name"
        )
    if len(value) > MAX_NAME or not _NAME.match(value) or value in (".", ".."):
        raise PdefmError(
            f"{what} {value!r} is not a plain name; use letters, digits and . _ + = - "
            f"(no slashes, no leading dot, at most {MAX_NAME} characters)"
        )
    return value


def contained_path(root: Path, relative: object, what: str) -> Path:
    """``root / relative`` if ``relative`` is a relative path that stays inside ``root``.

    Absolute paths, drive letters, ``..`` components and non-string values are refused, and so
    is a path that leaves ``root`` through a symbolic link.
    """
    if not isinstance(relative, str) or not relative:
        raise PdefmError(f"{what} must be a non-empty relative path, got {relative!r}")
    posix, windows = PurePosixPath(relative), PureWindowsPath(relative)
    if posix.is_absolute() or windows.is_absolute() or windows.drive or ".." in windows.parts:
        raise PdefmError(
            f"{what} {relative!r} leaves its folder; it must be a relative path inside {root}"
        )
    path = Path(root) / relative
    if not path.resolve().is_relative_to(Path(root).resolve()):
        raise PdefmError(f"{what} {relative!r} points outside {root} (through a link)")
    return path


def nearest_existing(path: str | Path) -> Path:
    """``path`` itself if it exists, else its nearest existing ancestor (absolute)."""
    probe = Path(path).absolute()
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    return probe


def check_creatable(path: Path, flag: str) -> None:
    """Refuse an output ``path`` that cannot be created: its nearest existing ancestor must be
    a folder this process may write to (checked up front, so nothing is half-made)."""
    path = Path(path)
    if path.exists():
        return
    parent = nearest_existing(path.absolute().parent)
    if not parent.is_dir():
        raise PdefmError(f"{flag} {path}: {parent} is a file, not a folder; choose another {flag}")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise PdefmError(f"{flag} {path}: {parent} is not writable; choose another {flag}")


# -- resources ------------------------------------------------------------------------------------
def available_memory() -> int | None:
    """Bytes of memory available to new allocations (Linux MemAvailable), else total memory
    from sysconf, else None when the platform says nothing."""
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (AttributeError, OSError, ValueError):
        return None


def human_bytes(n: float) -> str:
    """1536 -> '1.5 KiB'."""
    for unit in ("B", "KiB", "MiB", "GiB", "TiB", "PiB"):
        if abs(n) < 1024 or unit == "PiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    raise AssertionError("unreachable")


def check_memory(needed: float, what: str, fix: str) -> None:
    """Refuse ``what`` if it needs more than the memory available now."""
    have = available_memory()
    if have is not None and needed > have:
        raise PdefmError(
            f"{what} needs about {human_bytes(needed)} of memory and {human_bytes(have)} is "
            f"available; {fix}"
        )


def check_disk(folder: Path, needed: float, what: str, fix: str) -> None:
    """Refuse ``what`` if ``folder`` (or its nearest existing parent) has less free space."""
    probe = nearest_existing(folder)
    try:
        free = shutil.disk_usage(probe).free
    except OSError:
        return
    if needed > free:
        raise PdefmError(
            f"{what} needs about {human_bytes(needed)} of disk and {probe} has "
            f"{human_bytes(free)} free; {fix}"
        )


# -- output paths ---------------------------------------------------------------------------------
def check_output_file(path: str | Path, what: str) -> Path:
    """``path`` as a file to write (or overwrite): not a folder, inside a folder that exists.

    A missing folder is refused rather than created, so that a typo in it leaves no stray tree.
    """
    path = Path(path)
    if path.is_dir():
        raise PdefmError(f"{what} {path} is a folder; give a file name, e.g. {path / 'out.csv'}")
    parent = path.parent
    if not parent.is_dir():
        state = "is a file" if parent.exists() else "does not exist"
        raise PdefmError(
            f"the folder of {what} {path} {state}; create it (mkdir -p {parent}) or pick "
            "another path"
        )
    return path


def check_output_dir(path: str | Path, what: str) -> Path:
    """``path`` as a folder to write into: an existing folder, or one that can be created
    (no file stands at it or at any of its parents)."""
    path = Path(path)
    probe = nearest_existing(path)
    if probe.exists() and not probe.is_dir():
        at = "" if probe == path.absolute() else f" (its parent {probe} is a file)"
        raise PdefmError(f"{what} {path} is not a folder{at}; give a folder path")
    return path


def read_json(path: Path, fix: str) -> object:
    """The JSON in ``path``, or a one-line error naming the file and ``fix``."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise PdefmError(f"cannot read {path} ({exc.strerror or exc}); {fix}") from None
    except UnicodeDecodeError:
        raise PdefmError(f"{path} is not a text (UTF-8) file; {fix}") from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise PdefmError(
            f"{path} is not valid JSON (line {exc.lineno}: {exc.msg}); {fix}"
        ) from None


def field_error(path: Path, where: str, problem: str, fix: str) -> PdefmError:
    """The one-line error for a damaged field of a file: ``FILE: WHERE PROBLEM; FIX``."""
    return PdefmError(f"{path}: {where} {problem}; {fix}")
