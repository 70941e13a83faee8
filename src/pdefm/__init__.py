"""pdefm: pre-train neural operators on PDE families, adapt them with few examples, and measure
how that transfer scales (after Subramanian et al., NeurIPS 2023)."""

from pdefm.errors import PdefmError

__version__ = "0.1.0"

__all__ = ["PdefmError", "__version__"]
