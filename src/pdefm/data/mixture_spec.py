"""What a mixture is made of (no I/O): the members and their weights, split sizes, masks and
seed (``MixtureSpec``), how samples are shared out (``member_quotas``) and the union channel
layout (``union_channels``)."""

from __future__ import annotations

import shlex
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pdefm.catalogue import MASK_PREFIX, SPLITS, mask_name, union_order
from pdefm.checks import check_count, check_float, check_int
from pdefm.errors import PdefmError

BLOCK = 64  # rows per write and per content-hash block
MIXER_VERSION = 1
MAX_MEMBERS = 64


MAX_SAMPLES = 100_000_000  # per split, as for generated datasets


def union_channels(channel_lists: list[list[str]], masks: bool = False) -> list[str]:
    """The union of several input layouts in the fixed order (the catalogue's order first, then
    unknown channels in first-seen order), plus ``has_X`` for every coefficient X if ``masks``."""
    seen = [c for channels in channel_lists for c in channels]
    union = [c for c in union_order() if c in seen]
    union += [c for c in dict.fromkeys(seen) if c not in union]
    if masks:
        union += [mask_name(c) for c in union[1:] if not c.startswith(MASK_PREFIX)]
    return union


def member_quotas(weights: list[float], n: int) -> list[int]:
    """Split n samples by ``weights`` (largest remainder; ties to the earlier member)."""
    w = np.asarray(weights, dtype=np.float64)
    exact = w / w.sum() * n
    quotas = np.floor(exact).astype(int)
    for k in np.argsort(-(exact - quotas), kind="stable")[: n - quotas.sum()]:
        quotas[k] += 1
    return [int(q) for q in quotas]


@dataclass(frozen=True)
class MixtureSpec:
    """What a mixture is made of: member dataset directories with weights, split sizes."""

    members: tuple[tuple[str, float], ...]  # (dataset directory, weight)
    n_train: int
    n_val: int
    n_test: int
    masks: bool = False
    seed: int = 0

    def count(self, split: str) -> int:
        return {"train": self.n_train, "val": self.n_val, "test": self.n_test}[split]

    def to_dict(self) -> dict:
        return {
            "kind": "mixture",
            "members": [[str(Path(p).resolve()), float(w)] for p, w in self.members],
            "n_train": self.n_train,
            "n_val": self.n_val,
            "n_test": self.n_test,
            "masks": self.masks,
            "seed": self.seed,
            "block_size": BLOCK,
            "mixer_version": MIXER_VERSION,
        }

    def command(self) -> str:
        members = " ".join(shlex.quote(f"{p}:{w:g}") for p, w in self.members)
        flags = f"--n-train {self.n_train} --n-val {self.n_val} --n-test {self.n_test}"
        return f"pdefm mix {members} {flags} --seed {self.seed}" + (
            " --masks" if self.masks else ""
        )

    def validate(self) -> None:
        """Types, signs and ranges of every field, before any member is read (PdefmError)."""
        members = self.members
        if not isinstance(members, (tuple, list)) or len(members) < 2:
            raise PdefmError("a mixture needs at least two member datasets; give DIR[:WEIGHT] ...")
        if len(members) > MAX_MEMBERS:
            raise PdefmError(f"a mixture takes at most {MAX_MEMBERS} members, got {len(members)}")
        for member in members:
            if not isinstance(member, (tuple, list)) or len(member) != 2:
                raise PdefmError(f"a member must be (directory, weight), got {member!r:.80}")
            path, weight = member
            if not isinstance(path, (str, Path)) or not str(path):
                raise PdefmError(f"a member directory must be a path, got {path!r:.80}")
            check_float(weight, f"the weight of member {path}", positive=True, maximum=1e12)
        for split in SPLITS:
            check_count(self.count(split), f"--n-{split}", maximum=MAX_SAMPLES)
        check_int(self.seed, "--seed", minimum=0, maximum=2**63 - 1)
        if not isinstance(self.masks, bool):
            raise PdefmError(f"masks must be True or False, got {self.masks!r}")
        resolved = [str(Path(p).resolve()) for p, _ in members]
        twice = next(
            (p for p, r in zip(members, resolved, strict=True) if resolved.count(r) > 1), None
        )
        if twice is not None:
            raise PdefmError(
                f"member {twice[0]} is listed twice; give each directory once (weights set shares)"
            )
