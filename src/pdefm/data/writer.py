"""The one dataset writer: generated, imported and mixed datasets reach disk the same way.

A *block source* (``generate.py``, ``importer.py``, ``mixture.py``) says what a dataset is
(its kind, spec and command), how each split is laid out and what rows block b of a split holds;
this module does everything else, once:

- the output folder check: new, empty, this very dataset finished (a no-op), or this very
  dataset unfinished (a resume); anything else is refused before a byte is written;
- block-level resume: each split is written block by block into ``<split>.h5.partial``; after
  every block the file is flushed and the block's digest appended to ``.pdefm-progress.json``
  (atomically), so an interrupted run, however it was stopped, resumes after the last recorded
  block. Blocks are deterministic, so the resumed dataset is byte-identical to an uninterrupted
  one. A finished split is renamed to ``<split>.h5``;
- one content hash: split hash = SHA-256 of the concatenated per-block ``store.rows_digest`` hex
  digests (``split_hash`` recomputes it from a finished file for ``pdefm inspect --verify``);
- one atomic finish: the card (with the time spent, ``Progress.times``) is written last,
  atomically, and the progress file removed, so a folder with a card is a finished dataset.

Block b + 1 is computed while a writer thread writes, hashes and records block b (HDF5, hashlib
and torch release the GIL for most of that), so the disk work hides behind the next block.
Imports no torch.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import sys
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from pathlib import Path
from time import perf_counter, process_time
from typing import Protocol

import h5py
import numpy as np
from tqdm.auto import tqdm

from pdefm.catalogue import SPLITS
from pdefm.checks import check_creatable
from pdefm.data import store
from pdefm.data.card import CARD_NAME, PROGRESS_NAME, DatasetCard, load_card
from pdefm.data.io import atomic_replace, directory_lock, is_empty_dir, write_json_atomic
from pdefm.errors import PdefmError

Arrays = dict[str, np.ndarray]  # one block's rows in the layout of ``store`` (see write_rows)
BlockHook = Callable[[str, int], None]
BlockReader = Callable[[int], Arrays]
_CLOCKS = (("wall_s", perf_counter), ("cpu_s", process_time))  # process_time: all threads


@dataclass(frozen=True)
class SplitLayout:
    """The shape of one split file: ``count`` rows written in blocks of ``block_size`` (the
    last one shorter), (n, n) fields with n = ``resolution``, ``n_channels`` coefficient
    channels, the named per-sample coefficients and the ``optional`` vectors of ``store``."""

    count: int
    block_size: int
    resolution: int
    n_channels: int
    coefficient_names: tuple[str, ...]
    optional: tuple[str, ...] = ()
    fields: tuple[str, ...] = ()  # input fields besides the source (``store.FIELD_GROUP``)
    outputs: tuple[str, ...] = ()  # outputs besides the first (``store.OUTPUT_GROUP``)

    @property
    def n_blocks(self) -> int:
        return -(-self.count // self.block_size)

    def start(self, block: int) -> int:
        """First row of ``block``."""
        return block * self.block_size

    def stop(self, block: int) -> int:
        """One past the last row of ``block``."""
        return min(self.start(block) + self.block_size, self.count)


class BlockSource(Protocol):
    """What a dataset writer needs from generate, import or mix."""

    kind: str  # the card's kind: "generated", "imported" or "mixture"
    spec: dict  # JSON identity, stored in the progress file and the card
    guard: dict  # inputs that must be unchanged to resume (member hashes); else restart
    command: str  # the command that writes this dataset (for messages)
    desc: str  # progress-bar label
    refusals: tuple[type[BaseException], ...]  # errors meaning "cannot be written at all"

    def matches(self, spec: dict) -> bool:
        """True if ``spec`` (read from a card or progress file) describes this dataset."""

    def layout(self, split: str) -> SplitLayout:
        """How ``split`` is laid out."""

    def reading(self, split: str) -> AbstractContextManager[BlockReader]:
        """A context giving ``read(block) -> Arrays`` for ``split`` (opens what it reads)."""

    def card(self, out: Path, hashes: dict[str, str]) -> dict:
        """The card (JSON) of the finished dataset in ``out`` with these split hashes."""


# -- the output folder -----------------------------------------------------------------------
def check_out(out: Path) -> None:
    """Refuse an ``out`` that is a file or a non-empty folder holding no pdefm dataset (a
    finished one, or an unfinished one to resume)."""
    check_creatable(out, "--out")
    if out.exists() and not out.is_dir():
        raise PdefmError(f"--out {out} is a file; give a new or empty directory")
    if out.is_dir() and not is_empty_dir(out) and not _is_ours(out):
        raise PdefmError(
            f"--out {out} exists, is not empty and is not a pdefm dataset; give a new or "
            "empty directory (nothing was written)"
        )


def _is_ours(out: Path) -> bool:
    return (out / CARD_NAME).is_file() or (out / PROGRESS_NAME).is_file()


def finished(out: Path, source: BlockSource) -> DatasetCard | None:
    """The card of ``out`` if it already holds this dataset, finished; None if it holds no
    finished dataset; a PdefmError if it holds another one."""
    if not (out / CARD_NAME).is_file():
        return None
    card = load_card(out)
    if card.kind != source.kind or not source.matches(card.spec):
        raise PdefmError(
            f"{out} already holds a different dataset ({card.command}); "
            "choose another --out or delete it"
        )
    return card


# -- writing ---------------------------------------------------------------------------------
def write_dataset(
    source: BlockSource,
    out: str | Path,
    *,
    progress: bool = True,
    on_block: BlockHook | None = None,
) -> DatasetCard:
    """Write (or finish, or find already finished) ``source``'s dataset in ``out``; returns
    its card. ``on_block(split, block)`` is called after each block is durable.

    An OSError while writing (disk full, permissions) leaves a resumable folder and says so.
    One of ``source.refusals`` raised while writing removes what this call created (never what
    was there before, so a resume keeps its blocks) and propagates.
    """
    out = Path(out)
    check_out(out)
    resuming = (out / PROGRESS_NAME).is_file()
    before = set(out.iterdir()) if out.is_dir() else set()
    created = _make_folder(out)
    try:
        with directory_lock(out, f"{out} is being written by another process; wait for it"):
            return _write_locked(source, out, progress, on_block)
    except source.refusals:
        if created is not None:
            shutil.rmtree(created, ignore_errors=True)
        elif not resuming:
            for path in set(out.iterdir()) - before:
                path.unlink(missing_ok=True)
        raise
    except OSError as exc:  # disk full, quota, permissions: resumable
        raise PdefmError(
            f"writing {out} failed ({exc.strerror or exc}); fix that and rerun the same "
            "command to resume"
        ) from None


def _make_folder(out: Path) -> Path | None:
    """Create ``out``; returns the topmost folder this created (None if ``out`` existed)."""
    top = None
    for folder in reversed([out, *out.parents]):
        if not folder.exists():
            top = top or folder
    out.mkdir(parents=True, exist_ok=True)
    return top


def _write_locked(source: BlockSource, out: Path, progress: bool, on_block) -> DatasetCard:
    card = finished(out, source)
    if card is not None:
        return card
    state = _progress_state(source, out)
    layouts = {s: source.layout(s) for s in SPLITS}
    total = sum(lay.count for lay in layouts.values())
    done = sum(
        min(len(state.splits[s].blocks) * lay.block_size, lay.count) for s, lay in layouts.items()
    )
    with tqdm(
        total=total, initial=done, unit="sample", disable=not progress, desc=source.desc,
        file=sys.stderr,
    ) as bar:  # fmt: skip
        for split in SPLITS:
            _write_split(source, out, split, layouts[split], state, bar, on_block)
    data = source.card(out, {s: content_hash(state.splits[s].blocks) for s in SPLITS})
    card = DatasetCard.from_json({**data, "generation": state.times()}, out)
    write_json_atomic(out / CARD_NAME, card.to_json())
    (out / PROGRESS_NAME).unlink()
    return card


def content_hash(digests: list[str]) -> str:
    """A split's content hash from its blocks' ``store.rows_digest`` hex digests, in order."""
    return hashlib.sha256("".join(digests).encode()).hexdigest()


def split_hash(h5: h5py.File, count: int, block_size: int) -> str:
    """The content hash of a finished split file, recomputed block by block from its rows."""
    digests = [
        store.rows_digest(store.read_rows(h5, a, min(a + block_size, count)))
        for a in range(0, count, block_size)
    ]
    return content_hash(digests)


# -- the progress file -------------------------------------------------------------------------
@dataclass
class SplitProgress:
    """A split being written: the digests of its blocks written so far, in order."""

    blocks: list[str]
    complete: bool = False


@dataclass
class Progress:
    """``.pdefm-progress.json``: what is written (kind, command, spec, guard), how far each split
    got, the time spent (``times``); earlier versions' files read as a generation, no guard, 0 s."""

    kind: str
    command: str | None
    spec: dict
    guard: dict
    splits: dict[str, SplitProgress]
    origin: tuple[float, ...] = field(default_factory=lambda: tuple(c() for _, c in _CLOCKS))

    def times(self) -> dict[str, float]:
        """Seconds spent, summed over the processes that wrote, to the ms: each of ``_CLOCKS``
        less ``origin``, its reading at 0 s (the file's earlier time counted when it is read)."""
        return {k: round(c() - o, 3) for (k, c), o in zip(_CLOCKS, self.origin, strict=True)}

    @classmethod
    def fresh(cls, source: BlockSource) -> Progress:
        splits = {s: SplitProgress([]) for s in SPLITS}
        return cls(source.kind, source.command, source.spec, source.guard, splits)

    def to_json(self) -> dict:
        return {
            "kind": self.kind,
            "command": self.command,
            "spec": self.spec,
            "guard": self.guard,
            "splits": {
                s: {"blocks": p.blocks, "complete": p.complete} for s, p in self.splits.items()
            },
            "generation": self.times(),
        }

    @classmethod
    def read(cls, path: Path) -> Progress:
        """The file at ``path``; a garbled one is a one-line error (it is ours, but disks lie)."""
        try:
            data = json.loads(path.read_text())
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise PdefmError(
                f"{path} cannot be read ({exc}); delete its folder and write the dataset again"
            ) from None
        try:
            return cls._from_json(data)
        except (AttributeError, KeyError, TypeError, ValueError):
            raise PdefmError(
                f"{path} is not a pdefm progress file; delete its folder and retry"
            ) from None

    @classmethod
    def _from_json(cls, data: dict) -> Progress:
        splits = {}
        for split in SPLITS:
            entry = data["splits"][split]
            blocks = entry["blocks"]
            if not isinstance(blocks, list) or not all(isinstance(b, str) for b in blocks):
                raise TypeError("blocks")
            splits[split] = SplitProgress(blocks, bool(entry.get("complete", False)))
        if not isinstance(data["spec"], dict):
            raise TypeError("spec")
        guard = data.get("guard", {})
        if not isinstance(guard, dict):
            raise TypeError("guard")
        kind = data.get("kind", "generated")  # earlier versions: generation only
        origin = tuple(c() - float(data.get("generation", {}).get(k, 0)) for k, c in _CLOCKS)
        return cls(str(kind), data.get("command"), data["spec"], guard, splits, origin)

    def write(self, path: Path, durable: bool = True) -> None:
        write_json_atomic(path, self.to_json(), durable)


def _progress_state(source: BlockSource, out: Path) -> Progress:
    """The resume state of ``out`` (a fresh one, written, if there is none)."""
    path = out / PROGRESS_NAME
    if not path.is_file():
        return _fresh(source, path)
    state = Progress.read(path)
    if state.kind != source.kind or not source.matches(state.spec):
        command = state.command or f"the `pdefm` command that started {out}"
        raise PdefmError(
            f"{out} holds an unfinished {_noun(state.kind)} of another dataset ({command}); "
            "rerun that command or choose another --out"
        )
    if state.guard != source.guard:  # an input changed since: its blocks are stale
        tqdm.write(f"warning: restarting {out}: its inputs changed since it was started")
        return _fresh(source, path)
    return state


def _noun(kind: str) -> str:
    return {"generated": "generation", "imported": "import", "mixture": "mix"}.get(kind, kind)


def _fresh(source: BlockSource, path: Path) -> Progress:
    state = Progress.fresh(source)
    state.write(path)
    return state


# -- one split -----------------------------------------------------------------------------------
def _write_split(
    source: BlockSource,
    out: Path,
    split: str,
    layout: SplitLayout,
    state: Progress,
    bar: tqdm,
    on_block: BlockHook | None,
) -> None:
    """Write the missing blocks of ``split``, block b + 1 computed while b is written."""
    record = state.splits[split]
    if record.complete:
        return
    final, partial = out / f"{split}.h5", out / f"{split}.h5.partial"
    h5 = _open_partial(partial, layout, record, bar)

    def persist(block: int, arrays: Arrays) -> None:
        record.blocks.append(store.write_rows(h5, layout.start(block), arrays))
        h5.flush()
        state.write(out / PROGRESS_NAME, durable=False)

    def block_done(block: int, write: Future) -> None:
        write.result()  # the block is durable once this returns: report it
        bar.update(layout.stop(block) - layout.start(block))
        if on_block is not None:
            on_block(split, block)

    try:
        # Leaving the executor waits for a write in flight, so h5 is closed after it.
        with (
            source.reading(split) as read,
            ThreadPoolExecutor(max_workers=1, thread_name_prefix="pdefm-writer") as writer,
        ):
            pending: tuple[int, Future] | None = None
            for block in range(len(record.blocks), layout.n_blocks):
                arrays = read(block)
                if pending is not None:
                    block_done(*pending)
                pending = (block, writer.submit(persist, block, arrays))
            if pending is not None:
                block_done(*pending)
    finally:
        h5.close()
    atomic_replace(partial, final)
    record.complete = True
    state.write(out / PROGRESS_NAME)


def _open_partial(
    partial: Path, layout: SplitLayout, record: SplitProgress, bar: tqdm
) -> h5py.File:
    """Reopen a partial split to append to it, or start it afresh if it cannot be trusted."""
    if record.blocks and partial.is_file():
        try:
            return store.open_split_for_append(partial, layout.count)
        except PdefmError as exc:
            bar.write(f"warning: restarting split {partial.name}: {exc}")
            bar.update(-min(len(record.blocks) * layout.block_size, layout.count))
    record.blocks = []
    return store.create_split(
        partial,
        layout.count,
        layout.resolution,
        layout.n_channels,
        list(layout.coefficient_names),
        optional=layout.optional,
        fields=layout.fields,
        outputs=layout.outputs,
    )
