"""The Python API: load a checkpoint and predict with it, fine-tune it on your own data.

    import pdefm
    model = pdefm.load_model("runs/ID/checkpoint")
    u = model.predict({"source": f, "diffusion_xx": kxx, ...})        # (B, n, n)
    record = pdefm.finetune("runs/ID/checkpoint", "my_dataset", n_train=64, epochs=50)

Everything goes through the same engine as the CLI (``pdefm.train.loop``): the same channel
mapping by name, the same per-family normalisation, the same run records and checkpoints.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import torch

from pdefm.errors import PdefmError
from pdefm.train.checkpoint import load_checkpoint, map_channels
from pdefm.train.config import RunConfig
from pdefm.train.normalise import Normaliser

PREDICT_BATCH = 64


class Model:
    """A trained neural operator with what it needs to be used: its input channel names and
    normalisation (per PDE family). ``predict`` takes inputs in original units and returns
    the solution in original units."""

    def __init__(self, network: torch.nn.Module, card: dict, norm: Normaliser):
        self.network, self.card, self.norm = network.eval(), card, norm

    @property
    def input_channels(self) -> list[str]:
        """The channel vocabulary, in the order the network takes it (source first)."""
        return list(self.card["input_channels"])

    @property
    def families(self) -> list[str]:
        """The PDE families whose normalisation statistics the model carries."""
        return self.norm.family_names

    def to(self, device: str | torch.device) -> Model:
        self.network.to(device)
        return self

    @torch.no_grad()
    def predict(self, inputs, family: str | None = None, batch_size: int = PREDICT_BATCH):
        """The predicted solution u, shape (B, n, n), for inputs in original units.

        ``inputs`` is either an array / tensor (B, C, n, n) (or (C, n, n)) with the channels in
        ``input_channels`` order, or a mapping name -> value with ``source`` of shape (B, n, n)
        and each coefficient as (B,) or a scalar; channels the mapping lacks are zero (their
        ``has_X`` masks too), a channel the model has never seen is an error. ``family`` picks
        the normalisation statistics; by default those of the family the model was last
        trained on (a mixed model needs ``family=``). Returns
        numpy for numpy or mapping inputs, a tensor for a tensor."""
        as_numpy = not isinstance(inputs, torch.Tensor)
        x = self._to_model_layout(inputs)
        families = np.full(len(x), self._family(family))
        device = next(self.network.parameters()).device
        out = []
        for a in range(0, len(x), batch_size):
            part = slice(a, a + batch_size)
            xn, _, s = self.norm.normalise(x[part], None, families[part])
            out.append((self.network(xn.to(device)).float().cpu() * s)[:, 0])
        u = torch.cat(out)
        return u.numpy() if as_numpy else u

    def _family(self, family: str | None) -> str:
        if family is not None:
            self.norm.scale_of(family)  # one-line error for an unknown family
            return family
        trained_on = (self.card.get("datasets") or [{}])[-1].get("family")
        if trained_on in self.families:
            return trained_on  # a fine-tuned model predicts for the data it was tuned on
        if len(self.families) > 1:
            raise PdefmError(
                f"this model knows several families ({', '.join(self.families)}); pass "
                "family=... to predict"
            )
        return self.families[0]

    def _to_model_layout(self, inputs) -> torch.Tensor:
        """(B, C, n, n) float32 in ``input_channels`` order."""
        if isinstance(inputs, Mapping):
            return _from_mapping(inputs, self.input_channels)
        x = torch.as_tensor(np.asarray(inputs) if not torch.is_tensor(inputs) else inputs)
        x = x.float()[None] if x.dim() == 3 else x.float()
        if x.dim() != 4 or x.shape[1] != len(self.input_channels):
            raise PdefmError(
                f"inputs have shape {tuple(x.shape)}; expected (B, {len(self.input_channels)}, "
                f"n, n) with channels {', '.join(self.input_channels)} (or pass a dict by name)"
            )
        return x


def _from_mapping(inputs: Mapping, channels: list[str]) -> torch.Tensor:
    """Named inputs -> the model's layout (mapping by name, as for datasets)."""
    if "source" not in inputs:
        raise PdefmError("inputs has no 'source'; give the forcing field as source (B, n, n)")
    source = torch.as_tensor(np.asarray(inputs["source"]), dtype=torch.float32)
    source = source[None] if source.dim() == 2 else source
    if source.dim() != 3 or source.shape[-1] != source.shape[-2]:
        raise PdefmError(f"source has shape {tuple(source.shape)}; expected (B, n, n)")
    b, n = source.shape[0], source.shape[-1]
    names = ["source"] + [k for k in inputs if k != "source"]
    planes = [source]
    for name in names[1:]:
        value = torch.as_tensor(np.asarray(inputs[name]), dtype=torch.float32).reshape(-1)
        if value.numel() not in (1, b):
            raise PdefmError(f"{name} has {value.numel()} values for {b} samples; give 1 or {b}")
        planes.append(value.expand(b)[:, None, None].expand(b, n, n))
    cmap = map_channels(channels, names, "the model")
    return cmap.apply(torch.stack(planes, 1))


def load_model(path: str | Path, device: str | torch.device = "cpu") -> Model:
    """The checkpoint in ``path`` (a `pdefm train` output's ``checkpoint`` directory) as a
    ``Model``; nothing is unpickled."""
    network, card, norm = load_checkpoint(path, device)
    return Model(network, card, norm)


def finetune(
    checkpoint: str | Path,
    data: str | Path,
    *,
    n_train: int | None = None,
    epochs: int | None = None,
    steps: int | None = None,
    lrs: tuple[float, ...] | list[float] = (1e-3,),
    mode: str = "full",
    out: str | Path = "runs",
    **options,
) -> dict:
    """Fine-tune ``checkpoint`` on the pdefm dataset ``data`` (generated, mixed or imported);
    returns the run record (``record["checkpoint"]`` is the tuned model, ``record["test"]``
    its test metrics). ``options`` are further ``RunConfig`` fields (seed, batch_size,
    new_channels, lora_rank, device, progress, ...). Without a budget, 100 epochs."""
    from pdefm.train.loop import train

    if epochs is None and steps is None:
        epochs = 100
    config = RunConfig(
        data=str(data),
        init=str(checkpoint),
        mode=mode,
        n_train=n_train,
        epochs=epochs,
        steps=steps,
        lrs=tuple(lrs),
        out=str(out),
        **options,
    )
    return train(config)


def stage_checkpoint(study_dir: str | Path, stage: str) -> Path:
    """The checkpoint of pre-training stage ``stage`` of the study run in ``study_dir`` (e.g.
    ``stage_checkpoint("pdefm-demo", "poisson_1-5")``)."""
    plan_path = Path(study_dir) / "plan.json"
    if not plan_path.is_file():
        raise PdefmError(f"{study_dir} is not a study directory (no plan.json); run it first")
    runs = json.loads(plan_path.read_text())["runs"]
    stages = {r["labels"]["stage"]: r["id"] for r in runs if r["kind"] == "pretrain"}
    if stage not in stages:
        raise PdefmError(f"no pre-training stage {stage!r} in {study_dir} ({', '.join(stages)})")
    path = Path(study_dir) / "runs" / stages[stage] / "checkpoint"
    if not (path / "card.json").is_file():
        raise PdefmError(f"stage {stage!r} has not finished; run `pdefm study run` on it")
    return path
