"""Reading datasets as torch tensors: random access to samples, batches and subsets.

Files are opened lazily, once per process (safe with DataLoader workers, which fork), and
nothing is read until asked for: a subset of 8 samples of a 32K split reads 8 samples.
"""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np
import torch

from pdefm.catalogue import SPLITS
from pdefm.data import store
from pdefm.data.card import load_card
from pdefm.data.subset import balanced_subset
from pdefm.errors import PdefmError


class PDEDataset(torch.utils.data.Dataset):
    """One split of a pdefm dataset, optionally restricted to a subset of indices.

    ``ds[i]`` is ``(inputs, target)`` with inputs (C, n, n) float32 in ``ds.input_channels``
    order (the source first; a field input as stored, a constant input broadcast to a plane)
    and target (K, n, n), the outputs in ``ds.output_channels`` order (K = 1: the solution).
    """

    def __init__(self, root: str | Path, split: str = "train", indices: np.ndarray | None = None):
        if split not in SPLITS:
            raise PdefmError(f"unknown split {split!r}; choose one of {', '.join(SPLITS)}")
        self.root = Path(root)
        self.split = split
        self.card = load_card(self.root)
        self.count = self.card.count(split)
        self.path = self.card.split_file(split)  # never outside root
        self.indices = np.arange(self.count) if indices is None else np.asarray(indices, np.int64)
        self._h5: h5py.File | None = None
        self._h5_pid: int | None = None
        self._vectors: dict[str, np.ndarray] | None = None
        self._file()  # fail now, not at the first sample, if the file is damaged

    # -- metadata --------------------------------------------------------------------------
    @property
    def input_channels(self) -> list[str]:
        return self.card.input_channels

    @property
    def output_channels(self) -> list[str]:
        return self.card.output_channels

    @property
    def resolution(self) -> int:
        return self.card.resolution

    def __len__(self) -> int:
        return len(self.indices)

    def parameters(self) -> np.ndarray:
        """The declared physics parameter of each sample, shape (len,)."""
        return self.vectors()["parameter"][self.indices]

    def families(self) -> np.ndarray:
        """The PDE family of each sample, shape (len,) of str: the card's family, or for a
        mixture each sample's member family."""
        if self.card.is_mixture:
            names = np.array([m.family for m in self.card.members])
            return names[self.vectors()["member"][self.indices]]
        return np.full(len(self.indices), self.card.family)

    def vectors(self) -> dict[str, np.ndarray]:
        """Per-sample scalars of the whole split (parameter, sparsity, coefficients, ...)."""
        if self._vectors is None:
            self._vectors = store.read_vectors(self._file())
        return self._vectors

    # -- samples ---------------------------------------------------------------------------
    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        x, y = self.batch([i])
        return x[0], y[0]

    def batch(self, positions) -> tuple[torch.Tensor, torch.Tensor]:
        """Samples at ``positions`` of this dataset: inputs (B, C, n, n), target (B, K, n, n)."""
        rows = self.indices[np.asarray(positions, dtype=np.int64)]
        fields = store.read_fields(self._file(), rows)
        channels = torch.from_numpy(self.vectors()["channels"][rows]).to(torch.float32)
        n = self.resolution
        consts = self.card.constant_channels
        planes = {c: channels[:, i, None, None].expand(-1, n, n) for i, c in enumerate(consts)}
        field_names = self.card.field_channels
        planes[field_names[0]] = torch.from_numpy(fields["source"])
        for name in field_names[1:]:
            planes[name] = torch.from_numpy(fields[f"{store.FIELD_GROUP}/{name}"])
        inputs = torch.stack([planes[name] for name in self.input_channels], dim=1)
        keys = ["solution", *(f"{store.OUTPUT_GROUP}/{k}" for k in self.output_channels[1:])]
        return inputs, torch.stack([torch.from_numpy(fields[k]) for k in keys], dim=1)

    def input_fields(self, positions) -> dict[str, np.ndarray]:
        """The input fields besides the source at ``positions``, keyed ``coefficients/NAME``
        as the per-sample coefficients are (the operator of a variable-coefficient family
        reads them there): NAME -> (B, n, n) float32. Empty for constant-coefficient data."""
        names = self.card.field_channels[1:]
        if not names:
            return {}
        rows = self.indices[np.asarray(positions, dtype=np.int64)]
        fields = store.read_fields(self._file(), rows)
        return {f"coefficients/{k}": fields[f"{store.FIELD_GROUP}/{k}"] for k in names}

    def subset(self, n: int, seed: int = 0) -> PDEDataset:
        """n samples balanced over sparsity levels, deterministic and nested in n (see
        ``balanced_subset``); only valid on a full split."""
        if len(self.indices) != self.count:
            raise PdefmError("take subsets of a full split, not of a subset")
        levels = self.card.balance_levels
        return PDEDataset(self.root, self.split, balanced_subset(self.count, n, levels, seed))

    def _file(self) -> h5py.File:
        import os

        if self._h5 is None or self._h5_pid != os.getpid():
            fix = f"regenerate it: {self.card.command} --out NEW_DIR"
            self._h5 = store.open_split(self.path, self.count, fix=fix)
            self._h5_pid = os.getpid()
        return self._h5

    def close(self) -> None:
        if self._h5 is not None:
            self._h5.close()
            self._h5 = None

    def __getstate__(self) -> dict:
        state = dict(self.__dict__)
        state["_h5"] = None  # file handles do not cross processes
        return state
