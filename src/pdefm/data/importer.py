"""`pdefm import`: your own arrays (NPZ or HDF5) -> a pdefm dataset (splits, card, statistics).

The input file holds these arrays (top-level datasets in HDF5, the same names in NPZ):

    source             (N, n, n) or (N, 1, n, n)  real   the forcing field f (the field input)
    solution           (N, n, n) or (N, 1, n, n)  real   the target field u (one output)
    coefficients       (N, K)                     real   optional constant per-sample inputs
    coefficient_names  (K,)                       str    required with coefficients
    parameter          (N,)                       real   optional physics parameter (shift axis)
    parameter_name     ()                         str    optional, default "parameter"
    family, equation   ()                         str    optional descriptions (flags override)

The grid is taken as periodic on the unit square (x_i = i / n), as for generated data. The whole
file is validated before anything is written; the dataset is then written block by block into a
hidden sibling directory that is renamed to ``out`` once its card is written, so ``out`` is
either absent or a finished dataset. Imports no torch.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import hashlib
import os
import re
import secrets
import shlex
import shutil
import sys
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np
from tqdm.auto import tqdm

from pdefm import __version__, catalogue
from pdefm.catalogue import SPLITS
from pdefm.checks import check_creatable, check_disk, check_float, check_int, check_memory
from pdefm.data import card as cards
from pdefm.data import stats, store
from pdefm.data.io import fsync_dir, hash_file, is_empty_dir, write_json_atomic
from pdefm.errors import PdefmError

MIN_RESOLUTION = 8
MIN_SAMPLES = 3  # one per split
BLOCK_SIZE = 64  # rows per write and per content-hash block
IMPORTER_VERSION = 1
DEFAULT_FAMILY = "custom"
DEFAULT_EQUATION = "not given (imported data)"
KNOWN_ARRAYS = (
    "source",
    "solution",
    "coefficients",
    "coefficient_names",
    "parameter",
    "parameter_name",
    "family",
    "equation",
)
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.+-]*$")
_HELP = "see `pdefm import --help`"


@dataclass(frozen=True)
class ImportLayout:
    """What validation found: sizes, names and the small per-sample arrays (read whole)."""

    n_samples: int
    resolution: int
    coefficient_names: tuple[str, ...]
    coefficients: np.ndarray  # (N, K) float64
    parameter: np.ndarray  # (N,) float64, zeros when the file has none
    parameter_name: str  # "none" when the file has no parameter
    family: str
    equation: str


# -- reading the input file ------------------------------------------------------------------
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


# -- validation: every check runs before anything is written ----------------------------------
def validate(
    arrays: Arrays, family: str | None = None, equation: str | None = None
) -> ImportLayout:
    """Check every array of the input (names, ranks, shapes, counts, values) and return its
    ``ImportLayout``; the first problem is a one-line PdefmError naming the array and the fix."""
    _check_names(arrays)
    n, resolution = _check_fields(arrays)
    names, coefficients = _read_coefficients(arrays, n)
    parameter, parameter_name = _read_parameter(arrays, n)
    family = _check_family(family if family is not None else _file_string(arrays, "family"))
    equation = equation if equation is not None else _file_string(arrays, "equation")
    for name in ("source", "solution"):
        _scan_field(arrays, name, n)
    return ImportLayout(
        n_samples=n,
        resolution=resolution,
        coefficient_names=names,
        coefficients=coefficients,
        parameter=parameter,
        parameter_name=parameter_name,
        family=family,
        equation=equation or DEFAULT_EQUATION,
    )


def _check_names(arrays: Arrays) -> None:
    for name in ("source", "solution"):
        if name not in arrays.names:
            found = ", ".join(arrays.names) or "nothing"
            raise PdefmError(
                f"{arrays.path} has no array `{name}` (found: {found}); add it as "
                f"(N, n, n) ({_HELP})"
            )
    unknown = [k for k in arrays.names if k not in KNOWN_ARRAYS]
    if unknown:
        raise PdefmError(
            f"{arrays.path} holds unknown array `{unknown[0]}`; rename it to one of "
            f"{', '.join(KNOWN_ARRAYS)} or remove it"
        )


def _check_fields(arrays: Arrays) -> tuple[int, int]:
    """source and solution: rank, one channel, equal sample counts and square equal grids."""
    shapes = {name: _field_shape(arrays, name) for name in ("source", "solution")}
    (n, *grid), (n_u, *grid_u) = shapes["source"], shapes["solution"]
    if n_u != n:
        raise PdefmError(
            f"solution has {n_u} samples but source has {n}; give every array the same first "
            "dimension N"
        )
    if grid_u != grid:
        raise PdefmError(
            f"solution grid {tuple(grid_u)} differs from source grid {tuple(grid)}; sample both "
            "on the same n x n grid"
        )
    if grid[0] != grid[1]:
        raise PdefmError(
            f"source grid is {grid[0]} x {grid[1]}, not square; resample source and solution "
            "onto an n x n grid"
        )
    if grid[0] < MIN_RESOLUTION:
        raise PdefmError(
            f"source grid {grid[0]} x {grid[0]} is too small; give at least "
            f"{MIN_RESOLUTION} x {MIN_RESOLUTION} points"
        )
    if n < MIN_SAMPLES:
        raise PdefmError(
            f"source has {n} samples; give at least {MIN_SAMPLES} (one each for train, val, test)"
        )
    return n, grid[0]


def _field_shape(arrays: Arrays, name: str) -> tuple[int, int, int]:
    """(N, n, m) of a field given as (N, n, m) or (N, 1, n, m)."""
    shape = tuple(arrays.shape(name))
    _check_real(arrays, name)
    if len(shape) == 4 and shape[1] != 1:
        if name == "solution":
            raise PdefmError(
                f"solution has shape {shape}: {shape[1]} output channels, but pdefm models "
                "predict one field; import one output per dataset, e.g. solution[:, k]"
            )
        raise PdefmError(
            f"source has shape {shape}: pdefm takes one source field; pass constant per-sample "
            "inputs as coefficients (N, K) and drop the rest"
        )
    if len(shape) not in (3, 4):
        raise PdefmError(f"{name} has shape {shape}: expected (N, n, n) or (N, 1, n, n)")
    return (shape[0], shape[-2], shape[-1])


def _check_real(arrays: Arrays, name: str) -> None:
    if arrays.dtype(name).kind not in "fiu":
        raise PdefmError(
            f"{name} has dtype {arrays.dtype(name)}: expected real numbers; convert it with "
            ".astype(np.float32)"
        )


def _read_coefficients(arrays: Arrays, n: int) -> tuple[tuple[str, ...], np.ndarray]:
    """Names and values (N, K) float64 of the constant channels; K = 0 when there are none."""
    has_values, has_names = "coefficients" in arrays.names, "coefficient_names" in arrays.names
    if has_names and not has_values:
        raise PdefmError(
            "coefficient_names is given without coefficients; add coefficients (N, K) or "
            "remove coefficient_names"
        )
    if not has_values:
        return (), np.zeros((n, 0))
    if not has_names:
        raise PdefmError(
            "coefficients has unnamed channels; add coefficient_names (K,) strings, e.g. "
            "np.array(['diffusion_xx', 'diffusion_yy'])"
        )
    _check_real(arrays, "coefficients")
    values = arrays.whole("coefficients")
    if values.ndim != 2 or values.shape[0] != n:
        raise PdefmError(
            f"coefficients has shape {values.shape}: expected (N, K) = ({n}, K), one row per "
            "sample; reshape it, e.g. coefficients.reshape(N, -1)"
        )
    names = _strings(arrays, "coefficient_names")
    if len(names) != values.shape[1]:
        raise PdefmError(
            f"coefficient_names has {len(names)} names but coefficients has {values.shape[1]} "
            "columns; give one name per column"
        )
    _check_channel_names(names)
    _check_finite_rows("coefficients", values)
    return tuple(names), np.ascontiguousarray(values, dtype=np.float64)


def _check_channel_names(names: list[str]) -> None:
    for name in names:
        if not _NAME.match(name):
            raise PdefmError(
                f"coefficient_names holds {name!r}; use letters, digits, '_', '-', '.' (e.g. "
                "diffusion_xx) and no empty names"
            )
        if name in ("source", "solution"):
            raise PdefmError(
                f"coefficient_names holds {name!r}, the name of a field; rename that channel"
            )
    duplicate = next((k for k in names if names.count(k) > 1), None)
    if duplicate is not None:
        raise PdefmError(f"coefficient_names holds {duplicate!r} twice; give each channel once")


def _read_parameter(arrays: Arrays, n: int) -> tuple[np.ndarray, str]:
    """The per-sample parameter (N,) float64 and its name; zeros and "none" when absent."""
    has_name = "parameter_name" in arrays.names
    if "parameter" not in arrays.names:
        if has_name:
            raise PdefmError(
                "parameter_name is given without parameter; add parameter (N,) or remove "
                "parameter_name"
            )
        return np.zeros(n), "none"
    _check_real(arrays, "parameter")
    values = arrays.whole("parameter")
    if values.shape != (n,):
        raise PdefmError(
            f"parameter has shape {values.shape}: expected (N,) = ({n},), one value per "
            "sample; flatten it with parameter.reshape(-1)"
        )
    _check_finite_rows("parameter", values)
    name = _file_string(arrays, "parameter_name") if has_name else "parameter"
    if not name or not _NAME.match(name):
        raise PdefmError(
            f"parameter_name is {name!r}; use letters, digits, '_', '-', '.' (e.g. kappa)"
        )
    return np.asarray(values, dtype=np.float64), name


def _check_family(family: str) -> str:
    family = family or DEFAULT_FAMILY
    # a dataset named like a registered family would get that family's physics residual,
    # computed with the wrong operator
    if catalogue.is_family(family.lower()):
        raise PdefmError(
            f"family {family!r} is a registered pdefm family (whose operator gives physics "
            f"residuals); pick another name, e.g. {family.lower()}-own"
        )
    if not _NAME.match(family):
        raise PdefmError(
            f"family {family!r} is not a short name; use letters, digits, '_', '-', '.' "
            "(e.g. darcy-own)"
        )
    return family


def _strings(arrays: Arrays, name: str) -> list[str]:
    """A 1-D array of strings (str or bytes, NPZ or HDF5) as Python strings."""
    values = arrays.whole(name)
    if values.ndim != 1 or values.dtype.kind not in "USO":
        raise PdefmError(
            f"{name} has shape {values.shape} and dtype {values.dtype}: expected a 1-D array of "
            f"strings, e.g. np.array(['a', 'b'])"
        )
    out = [v.decode() if isinstance(v, bytes) else v for v in values.tolist()]
    if not all(isinstance(v, str) for v in out):
        raise PdefmError(f"{name} holds non-strings; give it as np.array(['a', 'b'])")
    return out


def _file_string(arrays: Arrays, name: str) -> str:
    """An optional scalar string of the file ('' when absent)."""
    if name not in arrays.names:
        return ""
    value = arrays.whole(name)
    item = value.reshape(-1)[0] if value.size == 1 else None
    if isinstance(item, bytes):
        item = item.decode()
    if not isinstance(item, str):
        raise PdefmError(f"{name} must be one string, e.g. np.savez(..., {name}='...')")
    return item.strip()


def _check_finite_rows(name: str, values: np.ndarray, offset: int = 0) -> None:
    """NaN/Inf (or, for fields, values float32 cannot hold) name the first bad sample."""
    flat = np.asarray(values).reshape(len(values), -1)
    bad = ~np.isfinite(flat).all(axis=1)
    if bad.any():
        i = offset + int(bad.argmax())
        raise PdefmError(
            f"{name} sample {i} holds NaN or Inf; fix or drop sample {i} (in every array)"
        )


def _scan_field(arrays: Arrays, name: str, n: int) -> None:
    """Check every sample of a field, a block at a time, for NaN/Inf and float32 overflow."""
    limit = np.finfo(np.float32).max
    for a in range(0, n, BLOCK_SIZE):
        block = arrays.rows(name, np.arange(a, min(a + BLOCK_SIZE, n)))
        _check_finite_rows(name, block, a)
        big = (np.abs(block.reshape(len(block), -1)) > limit).any(axis=1)
        if big.any():
            i = a + int(big.argmax())
            raise PdefmError(
                f"{name} sample {i} exceeds the float32 range (|x| > {limit:.3g}); rescale "
                f"{name} (pdefm stores fields as float32)"
            )


# -- splits ---------------------------------------------------------------------------------
def check_options(val_fraction: float, test_fraction: float, seed: int) -> None:
    """The split options on their own (before the file is read)."""
    for flag, value in (("--val-fraction", val_fraction), ("--test-fraction", test_fraction)):
        check_float(value, flag)
        if not 0.0 < value < 1.0:
            raise PdefmError(f"{flag} must be between 0 and 1 (exclusive), got {value:g}")
    if val_fraction + test_fraction >= 1.0:
        raise PdefmError(
            f"--val-fraction {val_fraction:g} + --test-fraction {test_fraction:g} leave no "
            "training samples; make their sum < 1"
        )
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise PdefmError(f"--seed must be a non-negative integer, got {seed!r}")
    check_int(seed, "--seed", maximum=2**63 - 1)


def split_indices(
    n: int, val_fraction: float, test_fraction: float, seed: int
) -> dict[str, np.ndarray]:
    """Sample indices of each split: a seeded permutation of range(n) cut by the fractions
    (val and test get round(n * fraction), at least 1), each split sorted so that rows keep
    the file's order and HDF5 reads run forwards. Returns {split: (count,) int64}."""
    n_val = max(1, round(n * val_fraction))
    n_test = max(1, round(n * test_fraction))
    n_train = n - n_val - n_test
    if n_train < 1:
        raise PdefmError(
            f"{n} samples leave no training samples after {n_val} val and {n_test} test; "
            "lower --val-fraction / --test-fraction or add samples"
        )
    perm = np.random.default_rng(seed).permutation(n)
    cuts = {"train": perm[:n_train], "val": perm[n_train : n_train + n_val]}
    cuts["test"] = perm[n_train + n_val :]
    return {split: np.sort(rows).astype(np.int64) for split, rows in cuts.items()}


# -- writing ----------------------------------------------------------------------------------
def import_dataset(
    path: str | Path,
    out: str | Path,
    family: str | None = None,
    equation: str | None = None,
    val_fraction: float = 0.1,
    test_fraction: float = 0.1,
    seed: int = 0,
    progress: bool = True,
) -> Path:
    """Validate the NPZ/HDF5 file ``path`` (see the module docstring) and write it as a pdefm
    dataset in ``out``, which must not exist or be empty. ``family`` / ``equation`` override
    the file's. Returns ``out``; on any error nothing is left behind."""
    path, out = Path(path).absolute(), Path(out)
    _check_out(out)
    check_options(val_fraction, test_fraction, seed)
    with open_input(path) as arrays:
        layout = validate(arrays, family, equation)
        splits = split_indices(layout.n_samples, val_fraction, test_fraction, seed)
        _check_disk(layout, out)
        options = {"val_fraction": val_fraction, "test_fraction": test_fraction, "seed": seed}
        _write_atomically(arrays, layout, splits, out, options, progress)
    return out


def _check_disk(layout: ImportLayout, out: Path) -> None:
    """Refuse an import the disk cannot hold: float32 fields plus the per-sample vectors."""
    per_sample = 8 * layout.resolution**2 + 8 * (len(layout.coefficient_names) * 2 + 8)
    check_disk(
        out, layout.n_samples * per_sample, "import", "free disk space or choose another --out"
    )


def _check_out(out: Path) -> None:
    check_creatable(out, "--out")
    if out.exists() and not out.is_dir():
        raise PdefmError(f"--out {out} is a file; choose another directory")
    if out.is_dir() and not is_empty_dir(out):
        raise PdefmError(
            f"--out {out} exists and is not empty; choose another directory (nothing was written)"
        )


def _write_atomically(
    arrays: Arrays, layout: ImportLayout, splits: dict, out: Path, options: dict, progress: bool
) -> None:
    """Write splits and card into a hidden sibling of ``out``, then rename it to ``out``."""
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.parent / f".{out.name}.import-{os.getpid()}-{secrets.token_hex(4)}"
    tmp.mkdir()  # not mkdtemp: its 0700 mode would stick to the dataset
    try:
        hashes = _write_splits(arrays, layout, splits, tmp, progress)
        card = build_card(arrays.path, layout, tmp, hashes, options)
        cards.check_card(card, tmp)
        write_json_atomic(tmp / cards.CARD_NAME, card)
        os.rename(tmp, out)  # replaces an empty ``out``; fails if one appeared meanwhile
        fsync_dir(out.parent)
    except OSError as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        raise PdefmError(
            f"writing {out} failed ({exc.strerror or exc}); fix that and rerun (nothing was "
            "left behind)"
        ) from None
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _write_splits(
    arrays: Arrays, layout: ImportLayout, splits: dict, root: Path, progress: bool
) -> dict[str, str]:
    """Write every split file; returns the content hash of each."""
    with tqdm(
        total=layout.n_samples,
        unit="sample",
        disable=not progress,
        desc=f"import {layout.family} {layout.resolution}x{layout.resolution}",
        file=sys.stderr,
    ) as bar:
        return {
            split: _write_split(arrays, layout, rows, root / f"{split}.h5", bar)
            for split, rows in splits.items()
        }


def _write_split(
    arrays: Arrays, layout: ImportLayout, rows: np.ndarray, path: Path, bar: tqdm
) -> str:
    """Write the file rows ``rows`` as one split, in blocks of BLOCK_SIZE. The content hash is
    generate.py's: SHA-256 of the concatenated per-block ``store.rows_digest`` hex digests,
    which is what ``pdefm inspect --verify`` recomputes from the file."""
    n, names = layout.resolution, list(layout.coefficient_names)
    digests = []
    with store.create_split(path, len(rows), n, len(names), names) as h5:
        for a in range(0, len(rows), BLOCK_SIZE):
            block = _block_arrays(arrays, layout, rows[a : a + BLOCK_SIZE])
            digests.append(store.write_rows(h5, a, block))
            bar.update(len(block["source"]))
    with open(path, "rb+") as fh:
        os.fsync(fh.fileno())
    return hashlib.sha256("".join(digests).encode()).hexdigest()


def _block_arrays(arrays: Arrays, layout: ImportLayout, rows: np.ndarray) -> dict:
    """The file's samples ``rows`` in the on-disk layout of ``store`` (same keys and dtypes
    as ``store.read_rows`` returns, so the digest can be recomputed from the split file)."""
    b, n = len(rows), layout.resolution
    source = arrays.rows("source", rows).reshape(b, n, n).astype(np.float32)
    solution = arrays.rows("solution", rows).reshape(b, n, n).astype(np.float32)
    channels = np.ascontiguousarray(layout.coefficients[rows])
    block = {
        "source": source,
        "solution": solution,
        "channels": channels,
        "parameter": layout.parameter[rows],
        "sparsity": np.zeros(b),  # imported sources have no lattice sparsity: one level, 0
        "attempts": np.ones(b, dtype=np.int64),
        "source_norm": _rms(source),
        "solution_norm": _rms(solution),
    }
    for i, name in enumerate(layout.coefficient_names):
        block[f"coefficients/{name}"] = np.ascontiguousarray(channels[:, i])
    return block


def _rms(field: np.ndarray) -> np.ndarray:
    """||x|| = sqrt(mean(x^2)) per sample in float64 (as generated datasets): (B, n, n) -> (B,).
    Taken from the stored float32 values, which are what training normalises."""
    return np.sqrt(np.square(field, dtype=np.float64).mean(axis=(-2, -1)))


# -- the card --------------------------------------------------------------------------------
def build_card(
    source_file: Path, layout: ImportLayout, root: Path, hashes: dict, options: dict
) -> dict:
    """The dataset card of an import: every key that readers of generated datasets use, plus
    ``spec`` (kind "import") recording the source file and its SHA-256."""
    declared = _declared(layout.parameter)
    counts, realised, vectors = {}, {}, {}
    for split in SPLITS:
        with store.open_split(root / f"{split}.h5") as h5:
            vectors[split] = store.read_vectors(h5)
        values = vectors[split]["parameter"]
        counts[split] = len(values)
        realised[split] = {"parameter": stats.parameter_summary(values, declared)}
    spec = {
        "kind": "import",
        "source_file": str(source_file),
        "source_sha256": file_sha256(source_file),
        **options,
        "block_size": BLOCK_SIZE,
        "family": layout.family,
        "equation": layout.equation,
    }
    return {
        "format": cards.CARD_FORMAT,
        "format_version": cards.CARD_VERSION,
        "pdefm_version": __version__,
        "generator_version": IMPORTER_VERSION,
        "family": layout.family,
        "equation": layout.equation,
        "family_config": {},
        "parameter": _parameter_entry(layout, declared),
        "grid": _grid(layout.resolution),
        "channels": {"inputs": ["source", *layout.coefficient_names], "outputs": ["solution"]},
        # One source "level" (all 0): PDEDataset.subset balances over len(sparsity_levels).
        "source_law": {"kind": "imported", "sparsity_levels": [0.0]},
        "seed": options["seed"],
        "counts": counts,
        "files": {s: f"{s}.h5" for s in SPLITS},
        "content_hash": hashes,
        "realised": realised,
        "normalisation": stats.normalisation_stats(
            vectors["train"], list(layout.coefficient_names)
        ),
        "warnings": [],
        "command": import_command(source_file, layout, options),
        "spec": spec,
        "created_utc": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
    }


def _declared(parameter: np.ndarray) -> dict:
    """Imported data declares no law: its range is the realised one, over all splits."""
    return {"kind": "imported", "low": float(parameter.min()), "high": float(parameter.max())}


def _parameter_entry(layout: ImportLayout, declared: dict) -> dict:
    given = layout.parameter_name != "none"
    description = (
        "per-sample value given in the imported file"
        if given
        else "none given in the imported file (stored as 0)"
    )
    return {
        "name": layout.parameter_name,
        "description": description,
        "integer": False,
        "declared": declared,
    }


def _grid(n: int) -> dict:
    return {
        "resolution": n,
        "domain": [[0.0, 1.0], [0.0, 1.0]],
        "periodic": True,  # assumed, as documented: the file cannot say otherwise
        "points": "x_i = i / n",
    }


def import_command(source_file: Path, layout: ImportLayout, options: dict) -> str:
    """The `pdefm import` command that recreates the dataset (add --out DIR), like the
    `pdefm generate` command of generated cards."""
    parts = [
        "pdefm import",
        shlex.quote(str(source_file)),
        f"--family {shlex.quote(layout.family)}",
    ]
    if layout.equation != DEFAULT_EQUATION:
        parts.append(f"--equation={shlex.quote(layout.equation)}")
    parts += [
        f"--val-fraction {float(options['val_fraction'])!r}",
        f"--test-fraction {float(options['test_fraction'])!r}",
        f"--seed {options['seed']}",
    ]
    return " ".join(parts)


def file_sha256(path: Path) -> str:
    """SHA-256 of a file's bytes."""
    return hash_file(path).hexdigest()
