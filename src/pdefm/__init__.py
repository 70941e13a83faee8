"""pdefm: pre-train neural operators on PDE families, adapt them with few examples, and measure
how that transfer scales (after Subramanian et al., NeurIPS 2023).

The Python API (torch is imported on first use, so ``import pdefm`` stays light)::

    pdefm.load_model(path, device="cpu") -> Model
        a `pdefm train` checkpoint (card.json) or a save_pretrained directory (config.json)
    pdefm.Model
        .predict(inputs, family=None) -> u, shape (B, C_out, n, n) like a dataset's targets
        .save_pretrained(dir) / Model.from_pretrained(dir)   config.json + model.safetensors
        .input_channels, .output_channels, .families, .to(device)
    pdefm.finetune(checkpoint, data, n_train=..., epochs=..., lrs=...) -> run record
    pdefm.import_dataset(file, out, x_axis=0)  your own NPZ / HDF5 / .pt data -> a dataset
    pdefm.stage_checkpoint(study_dir, stage) -> a study's pre-trained checkpoint
    pdefm.PdefmError                      every user error: one line, what is wrong and the fix
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from pdefm.errors import PdefmError

__version__ = "0.1.0"

if TYPE_CHECKING:  # static tools and IDEs see the lazy names below
    from pdefm.api import Model, finetune, load_model, stage_checkpoint
    from pdefm.data.importer import import_dataset

_API = {
    "load_model": "pdefm.api",
    "finetune": "pdefm.api",
    "stage_checkpoint": "pdefm.api",
    "Model": "pdefm.api",
    "import_dataset": "pdefm.data.importer",
}

__all__ = [
    "Model",
    "PdefmError",
    "__version__",
    "finetune",
    "import_dataset",
    "load_model",
    "stage_checkpoint",
]


def __getattr__(name: str):
    if name in _API:
        import importlib

        value = getattr(importlib.import_module(_API[name]), name)
        globals()[name] = value  # later lookups skip this function
        return value
    raise AttributeError(f"module 'pdefm' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(__all__) | set(globals()))
