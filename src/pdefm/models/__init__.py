"""Neural operators: the FNO of the study, its size presets, LoRA.

create_model(name, in_channels, out_channels=1, **overrides) -> FNO2d  (sets model.arch)
add_input_channels(model, n) -> the model with n more inputs (zero-initialised lift columns)
list_models() / model_info(name) / parameter_count(name, in_channels, out_channels)
add_lora(model, rank, alpha=None) / lora_parameters(model)
forward_flops(arch, n) / train_flops_per_sample(arch, n, trainable) / eval_flops(arch, n)
"""

from pdefm.models.flops import eval_flops, forward_flops, train_flops_per_sample
from pdefm.models.fno import FNO2d, FourierLayer, Pointwise
from pdefm.models.lora import add_lora, lora_parameters
from pdefm.models.registry import (
    add_input_channels,
    create_model,
    fourier_parameter_count,
    list_models,
    model_info,
    parameter_count,
    register_model,
)
from pdefm.models.spectral import SpectralConv2d

__all__ = [
    "add_input_channels",
    "FNO2d",
    "FourierLayer",
    "Pointwise",
    "SpectralConv2d",
    "add_lora",
    "create_model",
    "eval_flops",
    "forward_flops",
    "fourier_parameter_count",
    "list_models",
    "lora_parameters",
    "model_info",
    "parameter_count",
    "register_model",
    "train_flops_per_sample",
]
