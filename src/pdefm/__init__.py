"""pdefm: pre-train neural operators on PDE families, adapt them with few examples, and measure
how that transfer scales (after Subramanian et al., NeurIPS 2023).

The Python API (torch is imported on first use, so ``import pdefm`` stays light)::

    pdefm.load_model(path) -> Model       model.predict(inputs) -> u (B, n, n)
    pdefm.finetune(checkpoint, data, n_train=..., epochs=...) -> run record
    pdefm.import_dataset(file, out)       your own NPZ / HDF5 data -> a pdefm dataset
    pdefm.stage_checkpoint(study_dir, stage) -> a study's pre-trained checkpoint
"""

from pdefm.errors import PdefmError

__version__ = "0.1.0"

_API = {
    "load_model": "pdefm.api",
    "finetune": "pdefm.api",
    "stage_checkpoint": "pdefm.api",
    "Model": "pdefm.api",
    "import_dataset": "pdefm.data.importer",
}

__all__ = ["PdefmError", "__version__", *_API]


def __getattr__(name: str):
    if name in _API:
        import importlib

        return getattr(importlib.import_module(_API[name]), name)
    raise AttributeError(f"module 'pdefm' has no attribute {name!r}")
