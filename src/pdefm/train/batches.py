"""Model-ready batches of a dataset split: channels put in the model's order, kept in memory
when they fit (read once, in chunks), otherwise read from the HDF5 file batch by batch."""

from __future__ import annotations

import numpy as np
import torch

from pdefm.data.dataset import PDEDataset

MEMORY_LIMIT = 2 << 30  # bytes of float32 inputs + targets kept in memory per split
_READ_CHUNK = 256


class SplitBatches:
    """``get(positions)`` -> (inputs (B, C, n, n), targets (B, 1, n, n)) float32 on ``device``."""

    def __init__(self, ds: PDEDataset, channel_index: list[int], device: torch.device):
        self.ds, self.index, self.device = ds, channel_index, device
        n = ds.resolution
        nbytes = len(ds) * (len(ds.input_channels) + 1) * n * n * 4
        self.cached = None
        if nbytes <= MEMORY_LIMIT:
            parts = [
                self._read(np.arange(a, min(a + _READ_CHUNK, len(ds))))
                for a in range(0, len(ds), _READ_CHUNK)
            ]
            self.cached = tuple(torch.cat(p).to(device) for p in zip(*parts, strict=True))

    def __len__(self) -> int:
        return len(self.ds)

    def _read(self, positions: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        x, y = self.ds.batch(positions)
        return x[:, self.index], y

    def get(self, positions: torch.Tensor | np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        if self.cached is not None:
            idx = torch.as_tensor(positions, device=self.device)
            return self.cached[0][idx], self.cached[1][idx]
        x, y = self._read(np.asarray(positions))
        return x.to(self.device, non_blocking=True), y.to(self.device, non_blocking=True)

    def coefficients(self, positions: np.ndarray) -> dict[str, np.ndarray]:
        """Stored per-sample coefficients (for physics residuals) at ``positions``."""
        rows = self.ds.indices[np.asarray(positions)]
        vectors = self.ds.vectors()
        prefix = "coefficients/"
        return {k[len(prefix) :]: v[rows] for k, v in vectors.items() if k.startswith(prefix)}


class BatchCache:
    """The ``SplitBatches`` of a run's splits, read once and shared by every learning rate
    and by the final evaluation (keyed by split and channel order)."""

    def __init__(self, splits: dict[str, PDEDataset], device: torch.device):
        self.splits, self.device = splits, device
        self._cache: dict[tuple[str, tuple[int, ...]], SplitBatches] = {}

    def __call__(self, split: str, channel_index: list[int]) -> SplitBatches:
        key = (split, tuple(channel_index))
        if key not in self._cache:
            self._cache[key] = SplitBatches(self.splits[split], channel_index, self.device)
        return self._cache[key]
