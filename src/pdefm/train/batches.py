"""Model-ready batches of a dataset split: channels mapped onto the model's by name and
normalised (each example with its own family's statistics), kept on the training device when
they fit (read once, in chunks; on a GPU the batches are then gathered there, no host copy per
step), otherwise read from the HDF5 file batch by batch (on CUDA through pinned memory, so the
copy to the GPU does not stall the host)."""

from __future__ import annotations

import numpy as np
import torch

from pdefm.data.dataset import PDEDataset
from pdefm.train.checkpoint import ChannelMap
from pdefm.train.metrics import dataset_residual
from pdefm.train.normalise import Normaliser

MEMORY_LIMIT = 2 << 30  # bytes of float32 inputs + targets kept in CPU memory per split
GPU_FRACTION = 0.4  # of the free GPU memory one split may take (the rest is for training)
_READ_CHUNK = 256

Batch = tuple[torch.Tensor, torch.Tensor, torch.Tensor]


class SplitBatches:
    """``get(positions)`` -> (inputs (B, C, n, n), targets (B, 1, n, n), s (B, 1, 1, 1)) on
    ``device``: normalised inputs and targets and the per-example source scale s, so that the
    target in original units is ``targets * s`` (see ``Normaliser``)."""

    def __init__(self, ds: PDEDataset, cmap: ChannelMap, norm: Normaliser, device: torch.device):
        self.ds, self.cmap, self.norm, self.device = ds, cmap, norm, device
        self.families = ds.families()
        n = ds.resolution
        nbytes = len(ds) * (len(cmap.model) + 1) * n * n * 4
        self.cached: Batch | None = None
        if 0 < nbytes <= cache_limit(device):
            self.cached = self._read_all()

    def __len__(self) -> int:
        return len(self.ds)

    def _read_all(self) -> Batch:
        """The whole split on the device, filled chunk by chunk (host memory: one chunk)."""
        size = len(self.ds)
        out: Batch | None = None
        for a in range(0, size, _READ_CHUNK):
            chunk = self._read(np.arange(a, min(a + _READ_CHUNK, size)))
            if out is None:
                out = tuple(
                    torch.empty((size, *t.shape[1:]), dtype=t.dtype, device=self.device)
                    for t in chunk
                )
            for dst, src in zip(out, chunk, strict=True):
                dst[a : a + len(src)].copy_(src)
        return out

    @property
    def index_device(self) -> torch.device:
        """Where ``get`` wants its positions: with the cached tensors (indexing them then
        needs no copy of the indices to the GPU per batch), else on the CPU (they address the
        HDF5 file)."""
        return self.device if self.cached is not None else torch.device("cpu")

    def _read(self, positions: np.ndarray) -> Batch:
        x, y = self.ds.batch(positions)
        return self.norm.normalise(self.cmap.apply(x), y, self.families[positions])

    def get(self, positions: torch.Tensor | np.ndarray) -> Batch:
        if self.cached is not None:
            idx = torch.as_tensor(positions, device=self.device)
            return tuple(t[idx] for t in self.cached)
        batch = self._read(np.asarray(positions))
        if self.device.type == "cuda":  # from pinned memory the copy is truly asynchronous
            batch = tuple(t.pin_memory() for t in batch)
        return tuple(t.to(self.device, non_blocking=True) for t in batch)

    def residual(self, pred: torch.Tensor, source: torch.Tensor, positions) -> torch.Tensor:
        """||L u_pred - f|| / ||f|| per example (NaN where the family has no known operator);
        pred and source (B, n, n) in original units."""
        rows = self.ds.indices[np.asarray(positions)]
        vectors = {k: v[rows] for k, v in self.ds.vectors().items()}
        vectors.update(self.ds.input_fields(positions))  # a coefficient field (darcy's a)
        return dataset_residual(pred, source, self.ds.card, vectors)


def cache_limit(device: torch.device) -> int:
    """Bytes one split may take when kept on ``device``: MEMORY_LIMIT in CPU memory, a
    fraction of the GPU memory free now on CUDA (so larger sets stay on a large GPU)."""
    if device.type != "cuda":
        return MEMORY_LIMIT
    free, _ = torch.cuda.mem_get_info(device)
    return int(GPU_FRACTION * free)


class BatchCache:
    """The ``SplitBatches`` of a run's splits, read once and shared by every learning rate
    and by the final evaluation (keyed by split, channel map and normaliser)."""

    def __init__(self, splits: dict[str, PDEDataset], device: torch.device):
        self.splits, self.device = splits, device
        self._cache: dict[tuple, SplitBatches] = {}

    def __call__(self, split: str, cmap: ChannelMap, norm: Normaliser) -> SplitBatches:
        key = (split, cmap, norm)
        if key not in self._cache:
            self._cache[key] = SplitBatches(self.splits[split], cmap, norm, self.device)
        return self._cache[key]
