"""Files of public layouts presented as import files: ``InteropArrays`` has the ``Arrays``
interface of ``import_files`` (``path``, ``names``, ``whole``, ``shape``, ``dtype``, ``rows``,
``close``) over entries that read an HDF5 dataset by rows (``Rows``) or hold a small array
made on first use (``Value``). Imports no torch."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import h5py
import numpy as np

from pdefm.errors import PdefmError

PDEBENCH_DARCY = "pdebench-darcy"
WELL = "well"


@dataclass
class Rows:
    """A field read by rows from an HDF5 dataset: ``dataset[rows]``, or with ``channel``
    ``dataset[rows, channel]`` (PDEBench's (N, 1, n, n) solution as (N, n, n))."""

    dataset: h5py.Dataset
    label: str  # where it is in the file, for errors
    channel: int | None = None

    @property
    def shape(self) -> tuple[int, ...]:
        shape = tuple(self.dataset.shape)
        return shape if self.channel is None else (shape[0], *shape[2:])

    @property
    def dtype(self) -> np.dtype:
        return self.dataset.dtype

    def read(self, selection: slice | np.ndarray) -> np.ndarray:
        key = selection if self.channel is None else (selection, self.channel)
        return self.dataset[key]

    def whole(self) -> np.ndarray:
        return self.read(slice(None))


@dataclass
class Value:
    """A small array held in memory (a constant, coordinates, a name), made on first use
    (so that, e.g., a bad boundary description is an error only if the flag does not
    replace it)."""

    make: Callable[[], np.ndarray]
    _value: np.ndarray | None = field(default=None, repr=False)

    def get(self) -> np.ndarray:
        if self._value is None:
            self._value = np.asarray(self.make())
        return self._value

    @property
    def shape(self) -> tuple[int, ...]:
        return self.get().shape

    @property
    def dtype(self) -> np.dtype:
        return self.get().dtype

    def read(self, selection: slice | np.ndarray) -> np.ndarray:
        return self.get()[selection]

    def whole(self) -> np.ndarray:
        return self.get()


def value_of(array: object) -> Value:
    return Value(lambda: np.asarray(array))


class InteropArrays:
    """A PDEBench or Well-style HDF5 file presented as an import file (``import_files.Arrays``):
    ``names`` are the import format's names (source, solution, inputs, x, y, ...), each read
    from the file on demand."""

    def __init__(self, path: Path, h5: h5py.File, layout: str, entries: dict):
        self.path = path
        self.layout = layout  # PDEBENCH_DARCY or WELL
        self._h5 = h5
        self._entries: dict[str, Rows | Value] = entries
        self.names = tuple(entries)

    def whole(self, name: str) -> np.ndarray:
        return np.asarray(self._read(name, None))

    def shape(self, name: str) -> tuple[int, ...]:
        return self._entries[name].shape

    def dtype(self, name: str) -> np.dtype:
        return self._entries[name].dtype

    def rows(self, name: str, index: np.ndarray) -> np.ndarray:
        """Rows at increasing ``index`` (N, ...): one slice when they are contiguous."""
        if len(index) and index[-1] - index[0] + 1 == len(index):
            return self._read(name, slice(int(index[0]), int(index[-1]) + 1))
        return self._read(name, np.asarray(index))

    def _read(self, name: str, selection: slice | np.ndarray | None) -> np.ndarray:
        """Rows ``selection`` of ``name``, or all of it (a 0-d value too) when None."""
        entry = self._entries[name]
        try:
            return entry.whole() if selection is None else entry.read(selection)
        except OSError as exc:
            where = entry.label if isinstance(entry, Rows) else name
            raise PdefmError(
                f"{where} in {self.path} cannot be read ({exc}); the file is damaged, save it again"
            ) from None

    def close(self) -> None:
        self._h5.close()
