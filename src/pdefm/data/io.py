"""Atomic file writes: a reader sees the old file or the new one, never half of either."""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
from collections.abc import Iterator
from pathlib import Path

from pdefm.errors import PdefmError


def fsync_dir(path: Path) -> None:
    """Make a rename inside ``path`` durable."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


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
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(obj, indent=2, sort_keys=False) + "\n")
    atomic_replace(tmp, path, durable)


@contextlib.contextmanager
def directory_lock(path: Path, busy: str) -> Iterator[None]:
    """Hold an exclusive, non-blocking lock on directory ``path`` (released when the process
    dies, however it dies); a second holder gets PdefmError(``busy``)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise PdefmError(busy) from None
        yield
    finally:
        os.close(fd)
