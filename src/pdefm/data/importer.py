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
file is validated before anything is written; the dataset is then written block by block by
``writer.write_dataset`` (the same writer as generated data and mixtures: an interrupted import
resumes when rerun, and ``out`` holds a dataset only once its card is written). Imports no
torch.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import shlex
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pdefm import __version__
from pdefm.catalogue import SPLITS
from pdefm.checks import check_disk, check_float, check_int
from pdefm.data import card as cards
from pdefm.data import stats, store, writer
from pdefm.data.import_checks import BLOCK_SIZE, DEFAULT_EQUATION, ImportLayout, validate
from pdefm.data.import_files import Arrays
from pdefm.data.interop import open_any
from pdefm.data.io import hash_file
from pdefm.data.writer import SplitLayout
from pdefm.errors import PdefmError

IMPORTER_VERSION = 1


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


def import_dataset(
    path: str | Path,
    out: str | Path,
    family: str | None = None,
    equation: str | None = None,
    val_fraction: float = 0.1,
    test_fraction: float = 0.1,
    seed: int = 0,
    progress: bool = True,
    inputs: list[str] | None = None,
    x_axis: int | None = None,
    boundary: str | None = None,
    beta: float | None = None,
    outputs: list[str] | None = None,
) -> Path:
    """Validate the NPZ/HDF5/.pt file ``path`` (see the module docstring) and write it as a
    pdefm dataset in ``out`` (new, empty, or this same import to finish or find finished).
    ``family`` / ``equation`` override the file's, ``inputs`` (names of the file's input
    arrays besides source, fields or constants) its ``input_names``, ``x_axis`` (which array
    axis of the fields is x) and ``boundary`` (e.g. "dirichlet") its grid description;
    ``beta`` is the constant forcing of a PDEBench Darcy file (default: from its name);
    ``outputs`` names the output fields (default: the file's ``output_names``, else solution).
    Returns ``out``.

    Every check comes before ``out`` is created; an interrupted import resumes block by block
    when rerun (``writer.write_dataset``), and restarts if the input file changed meanwhile."""
    path, out = Path(path).absolute(), Path(out)
    writer.check_out(out)
    check_options(val_fraction, test_fraction, seed)
    with open_any(path, beta) as arrays:
        layout = validate(arrays, family, equation, inputs, x_axis, boundary, outputs)
        splits = split_indices(layout.n_samples, val_fraction, test_fraction, seed)
        options = {"val_fraction": val_fraction, "test_fraction": test_fraction, "seed": seed}
        given = {"inputs": inputs, "outputs": outputs, "x_axis": x_axis, "boundary": boundary}
        given["beta"] = beta
        for key, value in given.items():
            if value is not None:
                options[key] = list(value) if key in ("inputs", "outputs") else value
        source = ImportSource(arrays, layout, splits, options, file_sha256(path))
        if writer.finished(out, source) is None:
            if not (out / cards.PROGRESS_NAME).is_file():
                _check_disk(layout, out)
            writer.write_dataset(source, out, progress=progress)
    return out


def _check_disk(layout: ImportLayout, out: Path) -> None:
    """Refuse an import the disk cannot hold: float32 fields plus the per-sample vectors."""
    fields = 1 + len(layout.outputs) + len(layout.fields)
    per_sample = 4 * fields * layout.resolution**2 + 8 * (len(layout.coefficient_names) * 2 + 8)
    check_disk(
        out, layout.n_samples * per_sample, "import", "free disk space or choose another --out"
    )


@dataclass
class ImportSource:
    """The block source of an import (see ``writer.BlockSource``): block b of a split holds
    the file rows ``splits[split][b * BLOCK_SIZE : (b + 1) * BLOCK_SIZE]``."""

    arrays: Arrays
    file_layout: ImportLayout
    splits: dict[str, np.ndarray]
    options: dict
    source_sha256: str
    kind = "imported"
    refusals = ()

    @property
    def spec(self) -> dict:
        """The card's spec: what was imported from where, with which options."""
        return {
            "kind": "import",
            "source_file": str(self.arrays.path),
            "source_sha256": self.source_sha256,
            **self.options,
            "block_size": BLOCK_SIZE,
            "family": self.file_layout.family,
            "equation": self.file_layout.equation,
        }

    @property
    def guard(self) -> dict:
        """The input file's content: a file changed since the import started restarts it."""
        return {"source_sha256": self.source_sha256}

    @property
    def command(self) -> str:
        return import_command(self.arrays.path, self.file_layout, self.options)

    @property
    def desc(self) -> str:
        n = self.file_layout.resolution
        return f"import {self.file_layout.family} {n}x{n}"

    def matches(self, spec: dict) -> bool:
        """The same file, family and options; a finished import must also hold the same data."""
        return _without_hash(spec) == _without_hash(self.spec)

    def layout(self, split: str) -> SplitLayout:
        names = tuple(self.file_layout.coefficient_names)
        n = self.file_layout.resolution
        count = len(self.splits[split])
        return SplitLayout(
            count, BLOCK_SIZE, n, len(names), names, fields=self.file_layout.fields,
            outputs=self.file_layout.outputs[1:],
        )  # fmt: skip

    @contextlib.contextmanager
    def reading(self, split: str) -> Iterator[writer.BlockReader]:
        rows = self.splits[split]
        yield lambda b: _block_arrays(
            self.arrays, self.file_layout, rows[b * BLOCK_SIZE : (b + 1) * BLOCK_SIZE]
        )

    def card(self, out: Path, hashes: dict[str, str]) -> dict:
        return build_card(self, out, hashes)


def _without_hash(spec: dict) -> dict:
    return {k: v for k, v in spec.items() if k != "source_sha256"}


def _block_arrays(arrays: Arrays, layout: ImportLayout, rows: np.ndarray) -> dict:
    """The file's samples ``rows`` in the on-disk layout of ``store`` (same keys and dtypes
    as ``store.read_rows`` returns, so the digest can be recomputed from the split file)."""
    b, n = len(rows), layout.resolution
    transpose = layout.grid.file_x_axis == 1
    source = _field_rows(arrays, "source", rows, n, transpose, layout.source_constant)
    solution = _field_rows(arrays, layout.outputs[0], rows, n, transpose)
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
    for name in layout.fields:
        field = _field_rows(arrays, name, rows, n, transpose)
        block[f"{store.FIELD_GROUP}/{name}"] = field
        block[f"{store.FIELD_NORM_GROUP}/{name}"] = _rms(field)
    for name in layout.outputs[1:]:
        block[f"{store.OUTPUT_GROUP}/{name}"] = _field_rows(arrays, name, rows, n, transpose)
    return block


def _field_rows(
    arrays: Arrays, name: str, rows: np.ndarray, n: int, transpose: bool, constant: bool = False
) -> np.ndarray:
    """Rows of a field as (B, n, n) float32, x first (the file's [sample, y, x]
    transposed when ``transpose``); a constant (N,) array broadcast to planes."""
    values = arrays.rows(name, rows)
    if transpose and not constant:
        values = values.reshape(len(rows), n, n).transpose(0, 2, 1)
    if constant:
        return np.ascontiguousarray(
            np.broadcast_to(values[:, None, None], (len(rows), n, n)), np.float32
        )
    return values.reshape(len(rows), n, n).astype(np.float32)


def _rms(field: np.ndarray) -> np.ndarray:
    """||x|| = sqrt(mean(x^2)) per sample in float64 (as generated datasets): (B, n, n) -> (B,).
    Taken from the stored float32 values, which are what training normalises."""
    return np.sqrt(np.square(field, dtype=np.float64).mean(axis=(-2, -1)))


def build_card(source: ImportSource, root: Path, hashes: dict[str, str]) -> dict:
    """The dataset card of an import: every key that readers of generated datasets use, plus
    ``spec`` (kind "import") recording the source file and its SHA-256."""
    layout, options = source.file_layout, source.options
    declared = _declared(layout.parameter)
    counts, realised, vectors = {}, {}, {}
    for split in SPLITS:
        with store.open_split(root / f"{split}.h5") as h5:
            vectors[split] = store.read_vectors(h5)
        values = vectors[split]["parameter"]
        counts[split] = len(values)
        realised[split] = {"parameter": stats.parameter_summary(values, declared)}
    return {
        "format": cards.CARD_FORMAT,
        "format_version": cards.CARD_VERSION,
        "pdefm_version": __version__,
        "generator_version": IMPORTER_VERSION,
        "family": layout.family,
        "equation": layout.equation,
        "family_config": {},
        "parameter": _parameter_entry(layout, declared),
        "grid": layout.grid.card(layout.resolution),
        "channels": {
            "inputs": layout.input_channels,
            "fields": ["source", *layout.fields],
            "outputs": list(layout.outputs),
        },
        # One source "level" (all 0): PDEDataset.subset balances over len(sparsity_levels).
        "source_law": {"kind": "imported", "sparsity_levels": [0.0]},
        "seed": options["seed"],
        "counts": counts,
        "files": {s: f"{s}.h5" for s in SPLITS},
        "content_hash": hashes,
        "realised": realised,
        "normalisation": stats.normalisation_stats(
            vectors["train"], list(layout.coefficient_names), list(layout.fields)
        ),
        "warnings": [],
        "command": source.command,
        "spec": source.spec,
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
    for key in ("inputs", "outputs"):
        if key in options:
            parts.append(f"--{key}={shlex.quote(','.join(options[key]))}")
    if "x_axis" in options:
        parts.append(f"--x-axis {options['x_axis']}")
    if "boundary" in options:
        parts.append(f"--boundary={shlex.quote(options['boundary'])}")
    if "beta" in options:
        parts.append(f"--beta {options['beta']!r}")
    parts += [
        f"--val-fraction {float(options['val_fraction'])!r}",
        f"--test-fraction {float(options['test_fraction'])!r}",
        f"--seed {options['seed']}",
    ]
    return " ".join(parts)


def file_sha256(path: Path) -> str:
    """SHA-256 of a file's bytes."""
    return hash_file(path).hexdigest()
