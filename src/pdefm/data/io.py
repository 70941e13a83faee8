"""Atomic file writes and portable directory locks.

Writes: a reader sees the old file or the new one, never half of either. Temp files carry the
writer's pid and a random suffix, so two processes writing the same target never share one.

Locks: ``filelock`` (flock on POSIX, msvcrt on Windows), held on a hidden ``LOCK_NAME`` file
inside the locked directory and released when the holder dies, however it dies. Nothing here
imports ``fcntl``, so ``import pdefm`` works where it does not exist.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import secrets
from collections.abc import Iterator
from pathlib import Path

from filelock import FileLock, Timeout

from pdefm.errors import PdefmError

LOCK_NAME = ".pdefm.lock"  # inside every locked directory; ignored by "is it empty" checks


def fsync_dir(path: Path) -> None:
    """Make a rename inside ``path`` durable (a no-op where directories cannot be opened)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:  # Windows: directories cannot be opened; renames are durable there
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def temp_path(final: Path) -> Path:
    """A hidden sibling of ``final`` that no other process or call will pick."""
    return final.with_name(f".{final.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")


def atomic_replace(tmp: Path, final: Path, durable: bool = True) -> None:
    """Rename ``tmp`` over ``final`` (same directory). ``durable`` first fsyncs the data and
    then the directory, so the new file also survives a power cut; without it the swap is
    still atomic for every process (a killed writer leaves the old file or the new one)."""
    if durable:
        with open(tmp, "rb+") as fh:
            os.fsync(fh.fileno())
    os.replace(tmp, final)
    if durable:
        fsync_dir(final.parent)


def write_json_atomic(path: Path, obj: object, durable: bool = True) -> None:
    """Write ``obj`` as indented JSON to ``path`` atomically (see ``atomic_replace``)."""
    path = Path(path)
    tmp = temp_path(path)
    try:
        tmp.write_text(json.dumps(obj, indent=2, sort_keys=False) + "\n")
        atomic_replace(tmp, path, durable)
    finally:
        tmp.unlink(missing_ok=True)


def hash_file(path: Path, digest=None):
    """``digest`` (default a new SHA-256) updated with the bytes of ``path``, read in 1 MiB
    chunks so a large file never sits in memory whole."""
    digest = hashlib.sha256() if digest is None else digest
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest


def is_empty_dir(path: Path) -> bool:
    """True if ``path`` is a directory holding nothing but (at most) a pdefm lock file."""
    return path.is_dir() and all(p.name == LOCK_NAME for p in path.iterdir())


@contextlib.contextmanager
def directory_lock(path: Path, busy: str, wait: bool = False) -> Iterator[None]:
    """Hold an exclusive lock on directory ``path`` (released when the process dies).

    Without ``wait`` a second holder gets ``PdefmError(busy)`` at once; with it, it waits.
    A file system without locks is a one-line error rather than an unguarded write.
    """
    lock = FileLock(str(Path(path) / LOCK_NAME), timeout=-1 if wait else 0)
    try:
        lock.acquire()
    except Timeout:
        raise PdefmError(busy) from None
    except OSError as exc:
        raise PdefmError(
            f"cannot lock {path} ({exc.strerror or exc}); put it on a local or lock-capable "
            "file system"
        ) from None
    try:
        yield
    finally:
        lock.release()
