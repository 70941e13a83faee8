"""Reading an import's input file: NPZ (never unpickled) or HDF5, as one ``Arrays`` interface
that reads arrays whole or by rows."""

from __future__ import annotations

import contextlib
import zipfile
from collections.abc import Iterator
from pathlib import Path

import h5py
import numpy as np

from pdefm.checks import check_memory
from pdefm.errors import PdefmError

_HELP = "see `pdefm import --help`"


class _NpzArrays:
    """The arrays of an NPZ file. Members are compressed or not, so they cannot be memory
    mapped: each is loaded whole on first use and kept."""

    def __init__(self, path: Path):
        self.path = path
        try:
            self._npz = np.load(path, allow_pickle=False)
        except (OSError, ValueError, EOFError, zipfile.BadZipFile) as exc:
            raise PdefmError(
                f"{path} cannot be read as NPZ ({exc}); save it again with np.savez"
            ) from None
        self.names = tuple(self._npz.files)
        self._cache: dict[str, np.ndarray] = {}

    def header(self, name: str) -> tuple[tuple[int, ...], np.dtype]:
        """(shape, dtype) of member ``name`` from its .npy header, without loading it."""
        try:
            fmt = np.lib.format
            with self._npz.zip.open(f"{name}.npy") as fh:
                version = fmt.read_magic(fh)
                read = fmt.read_array_header_1_0 if version == (1, 0) else fmt.read_array_header_2_0
                shape, _, dtype = read(fh)
        except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as exc:
            raise PdefmError(
                f"{name} in {self.path} cannot be read ({exc}); the file is damaged, save it again"
            ) from None
        return tuple(int(d) for d in shape), np.dtype(dtype)

    def whole(self, name: str) -> np.ndarray:
        if name not in self._cache:
            shape, dtype = self.header(name)
            check_memory(
                float(np.prod(shape, dtype=float)) * dtype.itemsize,
                f"reading {name} {shape} from {self.path} (NPZ members load whole)",
                "save the data as HDF5 (read block by block) or import it in parts",
            )
            try:
                self._cache[name] = self._npz[name]
            except ValueError as exc:
                if "allow_pickle" in str(exc):
                    raise PdefmError(
                        f"{name} in {self.path} holds Python objects; save numbers as numeric "
                        "arrays and names as np.array([...], dtype=str)"
                    ) from None
                raise PdefmError(f"{name} in {self.path} cannot be read ({exc})") from None
            except (OSError, EOFError, zipfile.BadZipFile) as exc:
                raise PdefmError(
                    f"{name} in {self.path} cannot be read ({exc}); the file is damaged, "
                    "save it again"
                ) from None
        return self._cache[name]

    def shape(self, name: str) -> tuple[int, ...]:
        return self.header(name)[0]

    def dtype(self, name: str) -> np.dtype:
        return self.header(name)[1]

    def rows(self, name: str, index: np.ndarray) -> np.ndarray:
        return self.whole(name)[index]

    def close(self) -> None:
        self._npz.close()


class _H5Arrays:
    """The top-level datasets of an HDF5 file; rows are read on demand, never the whole field."""

    def __init__(self, path: Path):
        self.path = path
        try:
            self._h5 = h5py.File(path, "r")
        except OSError as exc:
            reason = str(exc).split("(")[0].strip().rstrip(",;:")
            raise PdefmError(f"{path} cannot be read as HDF5 ({reason}); save it again") from None
        self.names = tuple(self._h5.keys())

    def _dataset(self, name: str) -> h5py.Dataset:
        item = self._h5[name]
        if not isinstance(item, h5py.Dataset):
            raise PdefmError(
                f"{name} in {self.path} is an HDF5 group; store it as a top-level dataset"
            )
        return item

    def whole(self, name: str) -> np.ndarray:
        return np.asarray(self._read(name, ()))

    def shape(self, name: str) -> tuple[int, ...]:
        return self._dataset(name).shape

    def dtype(self, name: str) -> np.dtype:
        return self._dataset(name).dtype

    def rows(self, name: str, index: np.ndarray) -> np.ndarray:
        """Rows at increasing ``index``: one slice when they are contiguous."""
        if len(index) and index[-1] - index[0] + 1 == len(index):
            return self._read(name, slice(int(index[0]), int(index[-1]) + 1))
        return self._read(name, index)

    def _read(self, name: str, selection) -> np.ndarray:
        try:
            return self._dataset(name)[selection]
        except OSError as exc:
            raise PdefmError(
                f"{name} in {self.path} cannot be read ({exc}); the file is damaged, save it again"
            ) from None

    def close(self) -> None:
        self._h5.close()


Arrays = _NpzArrays | _H5Arrays


@contextlib.contextmanager
def open_input(path: Path) -> Iterator[Arrays]:
    """Open an NPZ or HDF5 file (told apart by content, not by suffix)."""
    if not path.is_file():
        what = "is a directory" if path.is_dir() else "does not exist"
        raise PdefmError(f"{path} {what}; give the NPZ or HDF5 file to import")
    if h5py.is_hdf5(path):
        arrays: Arrays = _H5Arrays(path)
    elif zipfile.is_zipfile(path):
        arrays = _NpzArrays(path)
    else:
        raise PdefmError(
            f"{path} is neither NPZ nor HDF5; save your arrays with np.savez or h5py ({_HELP})"
        )
    try:
        yield arrays
    finally:
        arrays.close()
