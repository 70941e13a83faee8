"""Reading an import's input file: NPZ (never unpickled), HDF5, or a dict of tensors saved
with ``torch.save`` (loaded with ``weights_only=True``: tensors, numbers and strings only, never
arbitrary objects), as one ``Arrays`` interface that reads arrays whole or by rows. PDEBench
Darcy and Well-style HDF5 files are presented in the same interface by ``interop.open_any``."""

from __future__ import annotations

import contextlib
import zipfile
from collections.abc import Iterator
from pathlib import Path

import h5py
import numpy as np

from pdefm.checks import check_memory
from pdefm.data.interop_arrays import InteropArrays
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


class _TorchArrays:
    """The entries of a ``torch.save``d dict (str -> tensor, number, string or list of
    strings), loaded whole by torch's restricted loader (``weights_only=True``): a file that
    needs anything else (a pickled object, a model) is refused without running it."""

    def __init__(self, path: Path):
        import torch  # only for .pt files: the rest of import starts without torch

        self.path = path
        try:
            data = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as exc:  # the restricted unpickler raises several types
            reason = str(exc).splitlines()[0][:160]
            raise PdefmError(
                f"{path} cannot be loaded as a dict of tensors with torch.load(weights_only="
                f"True) ({reason}); pdefm never unpickles arbitrary objects: save a dict of "
                "tensors, torch.save({'source': f, 'solution': u}, path), or use np.savez"
            ) from None
        if not isinstance(data, dict) or not all(isinstance(k, str) for k in data):
            raise PdefmError(
                f"{path} holds a {type(data).__name__}, not a dict of named tensors; save "
                "torch.save({'source': f, 'solution': u, ...}, path)"
            )
        self._arrays = {k: _as_array(path, k, v) for k, v in data.items()}
        self.names = tuple(self._arrays)

    def whole(self, name: str) -> np.ndarray:
        return self._arrays[name]

    def shape(self, name: str) -> tuple[int, ...]:
        return self._arrays[name].shape

    def dtype(self, name: str) -> np.dtype:
        return self._arrays[name].dtype

    def rows(self, name: str, index: np.ndarray) -> np.ndarray:
        return self._arrays[name][index]

    def close(self) -> None:
        self._arrays = {}


def _as_array(path: Path, name: str, value: object) -> np.ndarray:
    """A .pt dict entry as numpy: tensors (float64 kept, bfloat16 widened), numbers, strings
    and lists of strings."""
    import torch

    if isinstance(value, torch.Tensor):
        value = value.detach().cpu()
        if value.dtype in (torch.bfloat16, torch.float16):
            value = value.to(torch.float32)
        return value.numpy()
    if isinstance(value, str | int | float) and not isinstance(value, bool):
        return np.asarray(value)
    if isinstance(value, list | tuple) and all(isinstance(v, str) for v in value):
        return np.asarray(value, dtype=str)
    raise PdefmError(
        f"{name} in {path} is a {type(value).__name__}; store tensors, numbers, strings or "
        "lists of strings"
    )


Arrays = _NpzArrays | _H5Arrays | _TorchArrays | InteropArrays


def _first_byte(path: Path) -> bytes:
    with open(path, "rb") as fh:
        return fh.read(1)


def _is_torch_zip(path: Path) -> bool:
    """torch.save's zip archives hold ``<archive>/data.pkl``; NPZ archives hold ``*.npy``."""
    with contextlib.suppress(zipfile.BadZipFile, OSError), zipfile.ZipFile(path) as zf:
        return any(name.endswith("/data.pkl") or name == "data.pkl" for name in zf.namelist())
    return False


@contextlib.contextmanager
def open_input(path: Path) -> Iterator[Arrays]:
    """Open an NPZ, HDF5 or torch.save file (told apart by content, not by suffix)."""
    if not path.is_file():
        what = "is a directory" if path.is_dir() else "does not exist"
        raise PdefmError(f"{path} {what}; give the NPZ, HDF5 or .pt file to import")
    if h5py.is_hdf5(path):
        arrays: Arrays = _H5Arrays(path)
    elif _is_torch_zip(path):
        arrays = _TorchArrays(path)
    elif zipfile.is_zipfile(path):
        arrays = _NpzArrays(path)
    elif _first_byte(path) == b"\x80":
        raise PdefmError(
            f"{path} is a bare pickle (an old torch.save or pickle.dump); pdefm never "
            "unpickles such files: save a dict of tensors with torch.save (the default zip "
            "format) or the arrays with np.savez"
        )
    else:
        raise PdefmError(
            f"{path} is neither NPZ, HDF5 nor torch.save; save your arrays with np.savez, h5py "
            f"or torch.save of a dict of tensors ({_HELP})"
        )
    try:
        yield arrays
    finally:
        arrays.close()
