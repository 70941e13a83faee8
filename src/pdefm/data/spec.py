"""What a dataset is: the generation spec, validated, with the seeds derived from it.

A spec plus the generator version determines every byte of a dataset. Seeds derive from
(family, range, split, user seed) so that a pre-training set and a downstream set never share
source functions. The resolution is deliberately not part of the seed: the same spec at 64 and
128 draws the same lattice weights, i.e. the same continuous sources sampled on two grids, which
is what resolution-transfer evaluation needs.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
from dataclasses import asdict, dataclass, field, replace

import torch

from pdefm import catalogue
from pdefm.catalogue import SPLITS
from pdefm.checks import check_count, check_disk, check_float, check_int, check_memory
from pdefm.errors import PdefmError
from pdefm.pdes import GaussianLatticeSource, Grid, PDEFamily, get_family

GENERATOR_VERSION = 1
MAX_SAMPLES = 100_000_000  # per split; the disk check usually refuses far sooner
MAX_SEED = 2**63 - 1
MAX_BLOCK = 4096
# One block of 64 float64 fields at 4096 x 4096 is 8 GiB per array; finer grids are refused
# outright rather than by an estimate.
MAX_RESOLUTION = 4096
MAX_SIGMA = 0.5  # a Gaussian wider than half the periodic square is no longer a local bump
WORKING_ARRAYS = 10
_REDRAW_ROWS = 256  # blocks.ROUND_DRAWS, without importing the solver here
#: family_config keys with a flag of their own; any other constant is ``--constant KEY=VALUE``
_FLAGGED_CONFIG = ("exclude", "max_abs_u", "redraw_budget")

# family_config key -> (flag named in errors, kind, minimum, maximum)
_CONFIG_CHECKS = {
    "c": ("the constant c", "float", None, 1e6),
    "max_abs_u": ("--max-abs-u", "float", None, 1e12),
    "redraw_budget": ("--redraw-budget", "int", 1, 1_000_000_000),
}


@dataclass(frozen=True)
class GenerationSpec:
    """Everything that determines a dataset (see the module docstring)."""

    family: str
    low: float
    high: float
    n_train: int
    n_val: int
    n_test: int
    resolution: int = 128
    seed: int = 0
    family_config: dict = field(default_factory=dict)
    source: GaussianLatticeSource = field(default_factory=GaussianLatticeSource)
    block_size: int = 64
    generator_version: int = GENERATOR_VERSION

    def __post_init__(self) -> None:
        # Canonical types, so that a spec read back from JSON equals the one written. Values
        # of the wrong type are kept as given, for validate() to refuse with a clear message.
        for name in ("low", "high"):
            value = getattr(self, name)
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                object.__setattr__(self, name, float(value))
        with contextlib.suppress(TypeError, ValueError):
            object.__setattr__(self, "family_config", json.loads(json.dumps(self.family_config)))

    # -- construction ----------------------------------------------------------------------
    def to_dict(self) -> dict:
        d = asdict(self)
        d["source"] = self.source.to_dict()
        return d

    @classmethod
    def from_dict(cls, d: dict, where: str = "spec") -> GenerationSpec:
        """The spec recorded as ``d`` (a card's or progress file's ``spec``); a malformed one
        is a PdefmError naming ``where`` and the field. Call ``validate()`` for the values."""
        if not isinstance(d, dict):
            raise PdefmError(f"{where} must be a JSON object, got {type(d).__name__}")
        try:
            return cls(**{**d, "source": GaussianLatticeSource.from_dict(d["source"])})
        except KeyError as exc:
            raise PdefmError(f"{where} lacks the field {exc.args[0]!r}; regenerate it") from None
        except (TypeError, ValueError, IndexError, AttributeError) as exc:
            raise PdefmError(f"{where} is malformed ({exc}); regenerate it") from None

    def with_family_config(self, **config) -> GenerationSpec:
        return replace(self, family_config={**self.family_config, **config})

    # -- derived ---------------------------------------------------------------------------
    def pde(self) -> PDEFamily:
        return get_family(self.family, **self.family_config)

    def grid(self) -> Grid:
        return Grid(self.resolution)

    def count(self, split: str) -> int:
        return {"train": self.n_train, "val": self.n_val, "test": self.n_test}[split]

    def n_blocks(self, split: str) -> int:
        return -(-self.count(split) // self.block_size)

    def block_range(self, split: str, block: int) -> tuple[int, int]:
        start = block * self.block_size
        return start, min(start + self.block_size, self.count(split))

    def split_seed(self, split: str) -> int:
        """63-bit seed of a split, from (family, range, split, user seed)."""
        return _hash_to_seed(["pdefm", self.family, self.low, self.high, split, self.seed])

    def block_generator(self, split: str, block: int) -> torch.Generator:
        """The random stream of one block: blocks are independent, so any block can be
        (re)generated alone, which is what makes resume exact."""
        seed = _hash_to_seed([self.split_seed(split), block, self.generator_version])
        return torch.Generator().manual_seed(seed)

    def command(self) -> str:
        """A `pdefm generate` command line that reproduces this spec."""
        parts = [
            f"pdefm generate {self.family} --range {self.low:g} {self.high:g}",
            f"--n-train {self.n_train} --n-val {self.n_val} --n-test {self.n_test}",
            f"--resolution {self.resolution} --seed {self.seed}",
        ]
        if self.family_config.get("exclude"):
            parts.append("--drop-unsampleable")
        if "max_abs_u" in self.family_config:
            parts.append(f"--max-abs-u {self.family_config['max_abs_u']:g}")
        if "redraw_budget" in self.family_config:
            parts.append(f"--redraw-budget {self.family_config['redraw_budget']}")
        for key, value in self.family_config.items():
            if key not in _FLAGGED_CONFIG:
                parts.append(f"--constant {key}={value:g}" if not isinstance(value, str)
                             else f"--constant {key}={value}")  # fmt: skip
        if self.source.sigma != GaussianLatticeSource().sigma:
            parts.append(f"--sigma {self.source.sigma:g}")
        return " ".join(parts)

    # -- validation ------------------------------------------------------------------------
    def validate(self) -> None:
        """Raise PdefmError naming the first bad field and the fix. Types are checked too
        (``bool`` and ``float`` counts are refused), so Python callers get the CLI's checks."""
        if not catalogue.is_family(self.family):
            names = ", ".join(catalogue.family_names())
            raise PdefmError(f"unknown PDE family {self.family!r}; choose one of {names}")
        for split in SPLITS:
            check_count(self.count(split), f"--n-{split}", maximum=MAX_SAMPLES)
        check_int(self.seed, "--seed", minimum=0, maximum=MAX_SEED)
        check_int(self.block_size, "block size", minimum=1, maximum=MAX_BLOCK)
        _validate_source(self.source)
        self._validate_family_config()
        self._validate_range()
        self._validate_resolution()

    def _validate_family_config(self) -> None:
        config = self.family_config
        if not isinstance(config, dict):
            raise PdefmError(f"family_config must be a dict of constants, got {config!r}")
        for key, (flag, kind, low, high) in _CONFIG_CHECKS.items():
            if key not in config:
                continue
            if kind == "int":
                check_int(config[key], flag, minimum=low, maximum=high)
            else:
                check_float(config[key], flag, positive=True, maximum=high)
        if "exclude" in config:
            values = config["exclude"]
            if not isinstance(values, (list, tuple)):
                raise PdefmError(f"exclude must be a list of whole numbers, got {values!r}")
            for value in values:
                check_int(value, "an excluded value", minimum=-MAX_SEED, maximum=MAX_SEED)

    def _validate_range(self) -> None:
        pde = self._pde_or_error()
        name = pde.parameter.name
        lo = check_float(self.low, "--range LOW")
        hi = check_float(self.high, "--range HIGH")
        if lo > hi:
            raise PdefmError(
                f"--range {lo:g} {hi:g} is inverted: give LOW then HIGH, e.g. --range {hi:g} {lo:g}"
            )
        if lo == hi and not pde.parameter.integer:
            raise PdefmError(f"--range {lo:g} {hi:g} is empty (zero width); give LOW < HIGH")
        entry = catalogue.family(self.family)
        if hi > entry.max_parameter:
            raise PdefmError(
                f"--range {lo:g} {hi:g}: {self.family} supports {name} <= "
                f"{entry.max_parameter:g} ({entry.max_reason}); lower HIGH"
            )
        try:
            pde.validate_range(lo, hi)
        except ValueError as exc:
            raise PdefmError(f"--range {lo:g} {hi:g}: {exc}; change the range") from None

    def _pde_or_error(self) -> PDEFamily:
        try:
            return self.pde()
        except (ValueError, TypeError) as exc:
            raise PdefmError(str(exc)) from None

    def _validate_resolution(self) -> None:
        n = check_int(self.resolution, "--resolution", minimum=4, maximum=MAX_RESOLUTION)
        need = self.source.min_resolution()
        if n % 2:
            raise PdefmError(f"--resolution must be an even integer, got {n}; use {n + 1}")
        if n < need and self._pde_or_error().uses_source_law:
            raise PdefmError(
                f"--resolution {n} is too coarse for Gaussian sources of width "
                f"sigma={self.source.sigma:g} (needs 2 grid points per sigma): use "
                f"--resolution {need} or more, or wider sources with --sigma {2 / n:g}"
            )

    # -- resources -------------------------------------------------------------------------
    def disk_bytes(self) -> int:
        """Bytes the finished dataset takes: float32 source, solution and input fields plus
        the per-sample float64 vectors, over every split."""
        samples, pde = sum(self.count(s) for s in SPLITS), self.pde()
        fields = 2 + len(pde.field_channels)  # source, solution and the input fields
        vectors = 8 * (len(pde.coefficient_names) + 16 + len(pde.field_channels))
        return samples * (fields * 4 * self.resolution**2 + vectors)

    def memory_bytes(self) -> int:
        """Working set of generation: two blocks in flight (one computed, one being written),
        each about ``WORKING_ARRAYS`` float64 n x n arrays per sample (source, its spectrum,
        symbol, solution spectrum, solution and temporaries), with redraw rounds of up to 256
        candidates."""
        rows = min(self.block_size, max(self.count(s) for s in SPLITS))
        if hasattr(self.pde(), "max_abs_u"):  # a family that redraws sources
            rows = max(rows, _REDRAW_ROWS)
        return 2 * rows * WORKING_ARRAYS * 8 * self.resolution**2

    def check_resources(self, out, written: int = 0) -> None:
        """Refuse, before anything is written, a dataset the machine cannot hold; ``written``
        bytes of it are already on disk (a resumed run needs only the rest)."""
        fix = "lower --n-train/--n-val/--n-test or --resolution"
        check_memory(self.memory_bytes(), "generate", "lower --resolution")
        check_disk(out, max(0, self.disk_bytes() - written), "generate", fix)


def _validate_source(source: GaussianLatticeSource) -> None:
    """The source law's fields: types, finiteness and sane ranges."""
    check_float(
        source.sigma, "--sigma", positive=True, minimum=2 / MAX_RESOLUTION, maximum=MAX_SIGMA
    )
    check_int(source.lattice, "source lattice", minimum=1, maximum=64)
    check_float(source.spacing, "source lattice spacing", positive=True, maximum=1.0)
    levels = source.sparsity_levels
    if not isinstance(levels, (tuple, list)) or not 1 <= len(levels) <= 16:
        raise PdefmError(f"sparsity levels must be 1 to 16 numbers, got {levels!r}")
    for level in levels:
        check_float(level, "a sparsity level", minimum=0.0, maximum=0.99)
    lo = check_float(source.amplitude[0], "source amplitude low", minimum=0.0)
    check_float(source.amplitude[1], "source amplitude high", positive=True, minimum=lo)


def _hash_to_seed(parts: list) -> int:
    text = json.dumps(parts, sort_keys=True, default=str)
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "little") >> 1
