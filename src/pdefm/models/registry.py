"""Model registry: named presets of model factories, ``create_model`` and parameter counts.

A preset is (factory, keyword arguments, nominal size label). ``create_model(name, in_channels,
out_channels, **overrides)`` builds one and records ``model.arch``, a JSON-serialisable dict
such that ``create_model(**model.arch)`` rebuilds the same architecture (LoRA and domain
padding included). LoRA and padding are options of a built model, not sizes of a preset:
``model_info`` and ``parameter_count`` leave them out, and ``arch`` holds them only when set.

The FNO ladder of the study (4 Fourier layers; the label counts the Fourier weights,
4 layers * 2 corners * w * w * m * m * 2 real numbers):

    fno-64k (w 16, m 4), fno-1m (32, 8), fno-16m (64, 16), fno-67m (64, 32), fno-256m (128, 32)

plus two small presets for tests and CPU demos, below the ladder: fno-micro (8, 4; 16K Fourier
weights; runs on 16x16 grids) and fno-tiny (16, 8; 262K; grids of 16 and up).
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from pdefm.errors import PdefmError
from pdefm.models.fno import FNO2d, set_padding

# Factory arguments that are not preset sizes: no parameters, not in model_info, recorded in
# arch only when set (create_model takes them by name).
_ARCH_OPTIONS = ("padding",)


@dataclass(frozen=True)
class Preset:
    factory: Callable[..., nn.Module]
    kwargs: dict[str, Any] = field(default_factory=dict)
    label: str = ""


_PRESETS: dict[str, Preset] = {}


def register_model(
    name: str, factory: Callable[..., nn.Module], label: str | None = None, **preset_kwargs: Any
) -> None:
    """Register preset ``name``: ``factory(in_channels, out_channels, **preset_kwargs)``.

    ``label`` is the nominal size shown by ``model_info`` (default: computed for FNOs).
    """
    if name in _PRESETS:
        raise PdefmError(f"model preset {name!r} is already registered; pick another name")
    _PRESETS[name] = Preset(factory, dict(preset_kwargs), label or _default_label(preset_kwargs))


def list_models() -> list[str]:
    """Preset names, smallest first (registration order)."""
    return list(_PRESETS)


def model_info(name: str) -> dict[str, Any]:
    """The preset's keyword arguments plus ``n_layers`` and its nominal size ``label``."""
    preset = _preset(name)
    defaults = _factory_defaults(preset.factory)
    return {"name": name, **defaults, **preset.kwargs, "label": preset.label}


def create_model(
    name: str,
    in_channels: int,
    out_channels: int = 1,
    lora: dict[str, Any] | None = None,
    padding: float = 0.0,
    **overrides: Any,
) -> nn.Module:
    """Build preset ``name`` for ``in_channels`` inputs and ``out_channels`` outputs.

    ``overrides`` replace preset arguments (e.g. ``width=24``); ``lora`` ({"rank", "alpha"})
    adds LoRA parameters (see ``pdefm.models.lora``); ``padding`` is the FNO's domain padding
    fraction (``pdefm.models.fno``; 0: none). Sets ``model.arch``.
    """
    kwargs = _resolve(name, overrides)
    factory = _PRESETS[name].factory
    if padding:  # at 0 nothing is passed: a factory without padding builds as before
        if "padding" not in inspect.signature(factory).parameters:
            raise PdefmError(f"model {name!r} has no domain padding; leave padding at 0")
        kwargs["padding"] = padding
    model = factory(in_channels, out_channels, **kwargs)
    resolved = getattr(model, "hparams", kwargs)
    model.arch = {"name": name, "in_channels": in_channels, "out_channels": out_channels}
    model.arch.update(resolved)
    if lora is not None:
        from pdefm.models.lora import add_lora

        if not isinstance(lora, dict) or set(lora) - {"rank", "alpha"}:
            raise PdefmError(f"lora must be a dict with 'rank' and 'alpha', got {lora!r}")
        add_lora(model, lora.get("rank"), lora.get("alpha"))
    return model


def parameter_count(name: str, in_channels: int, out_channels: int = 1, **overrides: Any) -> int:
    """Number of parameters of ``create_model(name, in_channels, out_channels, **overrides)``,
    computed without allocating it (analytically for FNOs, else on the meta device)."""
    kwargs = _resolve(name, overrides)
    if _PRESETS[name].factory is FNO2d:
        return fno_parameter_count(in_channels, out_channels, **kwargs)
    with torch.device("meta"):
        model = _PRESETS[name].factory(in_channels, out_channels, **kwargs)
    return sum(p.numel() for p in model.parameters())


def fno_parameter_count(
    in_channels: int,
    out_channels: int,
    width: int,
    modes: int,
    n_layers: int = 4,
    head_width: int | None = None,
) -> int:
    """lift (C_in w + w) + L [spectral 2 w w m m 2 + skip (w w + w)] + head (w h + h + h C_out
    + C_out), h = head width."""
    h = 2 * width if head_width is None else head_width
    layer = 2 * width * width * modes * modes * 2 + width * width + width
    head = width * h + h + h * out_channels + out_channels
    return in_channels * width + width + n_layers * layer + head


def fourier_parameter_count(name: str) -> int:
    """Real numbers in the Fourier weights of FNO preset ``name``: L * 2 * w * w * m * m * 2."""
    info = model_info(name)
    w, m = info["width"], info["modes"]
    return info["n_layers"] * 2 * w * w * m * m * 2


# -- helpers ------------------------------------------------------------------------------------
def _preset(name: str) -> Preset:
    if name not in _PRESETS:
        raise PdefmError(f"unknown model preset {name!r}; choose one of {', '.join(_PRESETS)}")
    return _PRESETS[name]


def _resolve(name: str, overrides: dict[str, Any]) -> dict[str, Any]:
    """Preset kwargs with ``overrides`` applied; one-line error for an unknown key."""
    preset = _preset(name)
    allowed = list(_factory_defaults(preset.factory))
    unknown = [key for key in overrides if key not in allowed]
    if unknown:
        raise PdefmError(
            f"unknown option {unknown[0]!r} for model {name!r}; choose from {', '.join(allowed)}"
        )
    return {**preset.kwargs, **overrides}


def _factory_defaults(factory: Callable[..., nn.Module]) -> dict[str, Any]:
    """Keyword arguments of ``factory`` after (in_channels, out_channels), with defaults."""
    params = list(inspect.signature(factory).parameters.values())[2:]
    return {
        p.name: (None if p.default is p.empty else p.default)
        for p in params
        if p.name not in _ARCH_OPTIONS
    }


def _default_label(kwargs: dict[str, Any]) -> str:
    if "width" not in kwargs or "modes" not in kwargs:
        return ""
    w, m, layers = kwargs["width"], kwargs["modes"], kwargs.get("n_layers", 4)
    count = layers * 2 * w * w * m * m * 2
    return f"{count / 1e6:.0f}M" if count >= 1e6 else f"{count / 1e3:.0f}K"


for _name, _w, _m, _label in [
    ("fno-micro", 8, 4, "16K"),
    ("fno-tiny", 16, 8, "262K"),
    ("fno-64k", 16, 4, "64K"),
    ("fno-1m", 32, 8, "1M"),
    ("fno-16m", 64, 16, "16M"),
    ("fno-67m", 64, 32, "67M"),
    ("fno-256m", 128, 32, "256M"),
]:
    register_model(_name, FNO2d, label=_label, width=_w, modes=_m)


def add_input_channels(model: nn.Module, n_new: int) -> nn.Module:
    """Give ``model`` ``n_new`` more input channels: new lift columns, initialised to zero.

    The lift is h = P x with P of shape (w, C_in); P becomes (w, C_in + n_new). Zero columns
    keep the pre-trained function exactly as it was at the start of fine-tuning, while their
    gradient dL/dP_new = sum_(x, y) (dL/dh) x_new is not zero, so the new inputs are learned.
    ``model.arch["in_channels"]`` follows, so a checkpoint of the result rebuilds it."""
    lift = getattr(model, "lift", None)
    if not isinstance(lift, nn.Conv2d) or hasattr(lift, "lora_a"):
        raise PdefmError(
            "new input channels need a model with a 1x1 `lift` and no LoRA yet; add channels "
            "before LoRA (this happens in pdefm's training loop)"
        )
    weight = lift.weight.detach()
    extra = weight.new_zeros(weight.shape[0], n_new, *weight.shape[2:])
    lift.weight = nn.Parameter(torch.cat([weight, extra], dim=1))
    lift.in_channels += n_new
    model.in_channels += n_new
    model.arch["in_channels"] += n_new
    return model


def with_padding(model: nn.Module, fraction: float) -> nn.Module:
    """``model`` (an FNO) with domain padding ``fraction`` in place, ``arch`` included; padding
    has no weights, so any trained FNO takes it (see ``pdefm.models.fno.set_padding``)."""
    if not isinstance(model, FNO2d):
        if fraction == 0:
            return model
        raise PdefmError(
            f"model {getattr(model, 'arch', {}).get('name', type(model).__name__)!r} has no "
            "domain padding; leave padding at 0"
        )
    return set_padding(model, fraction)
