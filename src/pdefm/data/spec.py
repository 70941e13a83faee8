"""What a dataset is: the generation spec, validated, with the seeds derived from it.

A spec plus the generator version determines every byte of a dataset. Seeds derive from
(family, range, split, user seed) so that a pre-training set and a downstream set never share
source functions. The resolution is deliberately not part of the seed: the same spec at 64 and
128 draws the same lattice weights, i.e. the same continuous sources sampled on two grids, which
is what resolution-transfer evaluation needs.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import asdict, dataclass, field, replace

import torch

from pdefm.errors import PdefmError
from pdefm.pdes import FAMILIES, GaussianLatticeSource, Grid, PDEFamily, get_family

GENERATOR_VERSION = 1
SPLITS = ("train", "val", "test")


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
        # Canonical types, so that a spec read back from JSON equals the one written.
        object.__setattr__(self, "low", float(self.low))
        object.__setattr__(self, "high", float(self.high))
        object.__setattr__(self, "family_config", json.loads(json.dumps(self.family_config)))

    # -- construction ----------------------------------------------------------------------
    def to_dict(self) -> dict:
        d = asdict(self)
        d["source"] = self.source.to_dict()
        return d

    @classmethod
    def from_dict(cls, d: dict) -> GenerationSpec:
        d = dict(d)
        d["source"] = GaussianLatticeSource.from_dict(d["source"])
        return cls(**d)

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
        if self.source.sigma != GaussianLatticeSource().sigma:
            parts.append(f"--sigma {self.source.sigma:g}")
        return " ".join(parts)

    # -- validation ------------------------------------------------------------------------
    def validate(self) -> None:
        """Raise PdefmError naming the first bad field and the fix."""
        if self.family not in FAMILIES:
            raise PdefmError(
                f"unknown PDE family {self.family!r}; choose one of {', '.join(FAMILIES)}"
            )
        for split in SPLITS:
            n = self.count(split)
            if not isinstance(n, int) or n <= 0:
                raise PdefmError(f"--n-{split} must be a positive integer, got {n}")
        self._validate_range()
        self._validate_resolution()
        if self.block_size <= 0:
            raise PdefmError(f"block size must be positive, got {self.block_size}")

    def _validate_range(self) -> None:
        pde = self._pde_or_error()
        name = pde.parameter.name
        lo, hi = self.low, self.high
        if not (math.isfinite(lo) and math.isfinite(hi)):
            raise PdefmError(f"--range {lo} {hi}: both ends of the {name} range must be finite")
        if lo > hi:
            raise PdefmError(
                f"--range {lo:g} {hi:g} is inverted: give LOW then HIGH, e.g. --range {hi:g} {lo:g}"
            )
        if lo == hi and not pde.parameter.integer:
            raise PdefmError(f"--range {lo:g} {hi:g} is empty (zero width); give LOW < HIGH")
        try:
            pde.validate_range(lo, hi)
        except ValueError as exc:
            raise PdefmError(f"--range {lo:g} {hi:g}: {exc}; change the range") from None

    def _pde_or_error(self) -> PDEFamily:
        try:
            return self.pde()
        except ValueError as exc:
            raise PdefmError(str(exc)) from None

    def _validate_resolution(self) -> None:
        n, need = self.resolution, self.source.min_resolution()
        if not isinstance(n, int) or n < 4 or n % 2:
            raise PdefmError(f"--resolution must be an even integer, got {n}")
        if n < need:
            raise PdefmError(
                f"--resolution {n} is too coarse for Gaussian sources of width "
                f"sigma={self.source.sigma:g} (needs 2 grid points per sigma): use "
                f"--resolution {need} or more, or wider sources with --sigma {2 / n:g}"
            )


def _hash_to_seed(parts: list) -> int:
    text = json.dumps(parts, sort_keys=True, default=str)
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "little") >> 1
