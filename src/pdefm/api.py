"""The Python API: load a checkpoint and predict with it, save it, fine-tune it on your own data.

    import pdefm
    model = pdefm.load_model("runs/ID/checkpoint")       # or a save_pretrained directory
    u = model.predict({"source": f, "diffusion_xx": kxx, ...})   # (B, 1, n, n), like targets
    model.save_pretrained("my-model")                    # config.json + model.safetensors
    record = pdefm.finetune("runs/ID/checkpoint", "my_dataset", n_train=64, epochs=50)

Everything goes through the same engine as the CLI (``pdefm.train.loop``): the same channel
mapping by name, the same per-family normalisation, the same run records and checkpoints.
Every user error (a bad path, a damaged checkpoint, inputs of the wrong shape, a missing or
unknown channel, NaN inputs, an unknown option) is a ``PdefmError`` with a one-line message.
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import torch

from pdefm.catalogue import MASK_PREFIX  # presence masks: derived, never given by users
from pdefm.checks import check_int, contained_path
from pdefm.data.io import write_json_atomic
from pdefm.errors import PdefmError
from pdefm.train.checkpoint import CARD, CONFIG, WEIGHTS, load_checkpoint, write_weights
from pdefm.train.checkpoint_card import CheckpointCard
from pdefm.train.config import DEFAULT_EPOCHS, DEFAULT_LRS, RunConfig
from pdefm.train.normalise import Normaliser
from pdefm.train.record import RunRecord

PREDICT_BATCH = 64


class Model:
    """A trained neural operator with what it needs to be used: its input channel names and
    normalisation (per PDE family). ``predict`` takes inputs in original units and returns
    the solution in original units, shaped like a dataset's targets: (B, C_out, n, n)."""

    def __init__(self, network: torch.nn.Module, card: CheckpointCard, norm: Normaliser):
        self.network, self.card, self.norm = network.eval(), card, norm

    # -- loading and saving -------------------------------------------------------------------
    @classmethod
    def from_pretrained(cls, path: str | os.PathLike, device: str | torch.device = "cpu") -> Model:
        """The checkpoint directory ``path``: a `pdefm train` output's ``checkpoint``
        (``card.json``) or a ``save_pretrained`` directory (``config.json``), each with
        ``model.safetensors``. Every key, shape and value is checked; nothing is unpickled."""
        root = _path(path, "the checkpoint path")
        target = _device(device)
        network, card, norm = load_checkpoint(root)
        return cls(network.to(target), card, norm)

    def save_pretrained(self, path: str | os.PathLike) -> Path:
        """Write ``config.json`` (architecture name and arguments, channel names,
        normalisation, the family last trained on) and ``model.safetensors`` to the directory
        ``path`` (created if needed); ``Model.from_pretrained(path)`` loads it back."""
        root = _path(path, "the save_pretrained path")
        if root.exists() and not root.is_dir():
            raise PdefmError(f"{root} is a file; give a directory to save the model in")
        if (root / CARD).exists():
            raise PdefmError(
                f"{root} holds a `pdefm train` checkpoint ({CARD}); save to another directory"
            )
        try:
            root.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise PdefmError(f"cannot create {root} ({exc.strerror or exc})") from None
        card = {
            **self.card.to_json(),
            "arch": self.network.arch,
            "normalisation": self.norm.to_dict(),
        }
        config = dataclasses.replace(self.card, data=card).config_json()
        write_weights(root / WEIGHTS, self.network)
        write_json_atomic(root / CONFIG, config)  # last: the directory is complete
        return root

    # -- description --------------------------------------------------------------------------
    @property
    def input_channels(self) -> list[str]:
        """The channel vocabulary, in the order the network takes it (source first)."""
        return self.card.input_channels

    @property
    def output_channels(self) -> list[str]:
        """The predicted fields, in the order of ``predict``'s second axis."""
        return self.card.output_channels

    @property
    def families(self) -> list[str]:
        """The PDE families whose normalisation statistics the model carries."""
        return self.norm.family_names

    def to(self, device: str | torch.device) -> Model:
        """Move the network to ``device`` (auto, cpu, cuda, cuda:N, mps)."""
        self.network.to(_device(device))
        return self

    # -- prediction ---------------------------------------------------------------------------
    @torch.no_grad()
    def predict(self, inputs, family: str | None = None, batch_size: int = PREDICT_BATCH):
        """The predicted outputs, shape (B, C_out, n, n) as a dataset's targets (channels in
        ``output_channels`` order; C_out = 1 for a single solution field), in original units.

        ``inputs`` is either an array / tensor (B, C, n, n) (or (C, n, n), then B = 1) with the
        channels in ``input_channels`` order, or a mapping name -> value with ``source`` of
        shape (B, n, n) (or (n, n)) and every other channel as a field (B, n, n) or a
        constant (B,) or scalar (a constant and a field of one name are one input). Masks
        ``has_X`` are derived (1 where X is given); a coefficient whose mask the model has may
        be left out (the family lacks it), any other must be given, and a name the model does
        not know is an error. ``family`` picks the normalisation statistics; by default those
        of the family the model was last trained on (a mixed model needs ``family=``).
        Returns numpy for numpy or mapping inputs, a tensor (on the CPU) for a tensor."""
        check_int(batch_size, "batch_size", minimum=1)
        as_numpy = not isinstance(inputs, torch.Tensor)
        x = self._to_model_layout(inputs)
        families = np.full(len(x), self._family(family))
        device = next(self.network.parameters()).device
        out = []
        for a in range(0, len(x), batch_size):
            part = slice(a, a + batch_size)
            xn, _, s = self.norm.normalise(x[part], None, families[part])
            out.append(self.network(xn.to(device)).float().cpu() * s.cpu())
        u = torch.cat(out)
        return u.numpy() if as_numpy else u

    def _family(self, family: str | None) -> str:
        if family is not None:
            if not isinstance(family, str):
                raise PdefmError(f"family must be a family name, got {family!r}")
            self.norm.scale_of(family)  # one-line error for an unknown family
            return family
        trained_on = self.card.last_family
        if trained_on in self.families:
            return trained_on  # a fine-tuned model predicts for the data it was tuned on
        if len(self.families) > 1:
            raise PdefmError(
                f"this model knows several families ({', '.join(self.families)}); pass "
                "family=... to predict"
            )
        return self.families[0]

    def _to_model_layout(self, inputs) -> torch.Tensor:
        """(B, C, n, n) float32 in ``input_channels`` order, finite, B >= 1."""
        if isinstance(inputs, Mapping):
            return _from_mapping(inputs, self.input_channels)
        x = _real_tensor(inputs, "inputs")
        x = x[None] if x.dim() == 3 else x
        if x.dim() != 4 or x.shape[1] != len(self.input_channels):
            raise PdefmError(
                f"inputs have shape {tuple(x.shape)}; expected (B, {len(self.input_channels)}, "
                f"n, n) with channels {', '.join(self.input_channels)} (or pass a dict by name)"
            )
        if len(x) == 0:
            raise PdefmError("inputs hold no samples (B = 0); give at least one")
        return x


def _from_mapping(inputs: Mapping, channels: list[str]) -> torch.Tensor:
    """Named inputs -> the model's layout (mapping by name, as for datasets): (B, C, n, n)."""
    from pdefm.train.checkpoint import map_channels

    _check_names(inputs, channels)
    field = channels[0]
    source = _real_tensor(inputs[field], field)
    source = source[None] if source.dim() == 2 else source
    if source.dim() != 3 or source.shape[-1] != source.shape[-2] or len(source) == 0:
        raise PdefmError(f"{field} has shape {tuple(source.shape)}; expected (B, n, n), B >= 1")
    b, n = source.shape[0], source.shape[-1]
    names = [field] + [k for k in inputs if k != field]
    planes = [source]
    for name in names[1:]:
        planes.append(_plane(_real_tensor(inputs[name], name), name, b, n).to(source.device))
    cmap = map_channels(channels, names, "the model")
    return cmap.apply(torch.stack(planes, 1))


def _plane(value: torch.Tensor, name: str, b: int, n: int) -> torch.Tensor:
    """An input channel as planes (B, n, n): a field (B, n, n) or (n, n) as given, a constant
    (B,) or a scalar broadcast (a constant and a field of one name are the same input)."""
    if value.dim() >= 2 and tuple(value.shape[-2:]) == (n, n):
        field = value.reshape(-1, n, n)
        if len(field) not in (1, b):
            raise PdefmError(f"{name} has {len(field)} fields for {b} samples; give 1 or {b}")
        return field.expand(b, n, n)
    flat = value.reshape(-1)
    if flat.numel() not in (1, b):
        raise PdefmError(
            f"{name} has {flat.numel()} values for {b} samples; give 1 or {b} (or fields "
            f"({b}, {n}, {n}))"
        )
    return flat.expand(b)[:, None, None].expand(b, n, n)


def _check_names(inputs: Mapping, channels: list[str]) -> None:
    """Unknown names and missing channels, each one line (a missing coefficient is not
    silently zero unless the model has its presence mask)."""
    model_inputs = ", ".join(channels)
    if not all(isinstance(k, str) for k in inputs):
        raise PdefmError(f"input names must be text; the model takes {model_inputs}")
    unknown = [k for k in inputs if k not in channels]
    if unknown:
        raise PdefmError(
            f"the model has never seen the input(s) {', '.join(map(repr, unknown))} (its "
            f"inputs: {model_inputs}); drop them or fix their names"
        )
    if channels[0] not in inputs:
        raise PdefmError(
            f"inputs has no {channels[0]!r}; give the forcing field as {channels[0]} (B, n, n)"
        )
    optional = {c for c in channels if c.startswith(MASK_PREFIX)}
    optional |= {c[len(MASK_PREFIX) :] for c in optional}
    missing = [c for c in channels[1:] if c not in inputs and c not in optional]
    if missing:
        raise PdefmError(
            f"inputs lack {', '.join(map(repr, missing))} (the model takes {model_inputs}); "
            "give every coefficient, 0 where your problem has none"
        )


def _real_tensor(value: object, name: str) -> torch.Tensor:
    """``value`` (array, tensor, list or number) as a finite float32 tensor."""
    if torch.is_tensor(value):
        if value.is_complex():
            raise PdefmError(f"{name} is complex; give real numbers")
        t = value.detach().float()
    else:
        try:
            array = np.asarray(value)
        except (ValueError, TypeError):
            raise PdefmError(f"{name} is not an array of numbers (ragged or mixed)") from None
        if array.dtype.kind not in "biuf":
            raise PdefmError(f"{name} must hold real numbers, got dtype {array.dtype}")
        t = torch.from_numpy(np.ascontiguousarray(array, dtype=np.float32))
    if not bool(torch.isfinite(t).all()):
        raise PdefmError(f"{name} holds NaN or infinite values; give finite numbers")
    return t


def _path(value: object, what: str) -> Path:
    if not isinstance(value, (str, os.PathLike)) or not str(value):
        raise PdefmError(f"{what} must be a path (str or pathlib.Path), got {value!r}")
    return Path(value)


def _device(device: object) -> torch.device:
    from pdefm.train.loop import resolve_device

    return resolve_device(device)


# -- functions ------------------------------------------------------------------------------------
def load_model(path: str | os.PathLike, device: str | torch.device = "cpu") -> Model:
    """The checkpoint in ``path`` as a ``Model`` (see ``Model.from_pretrained``: a `pdefm
    train` checkpoint or a ``save_pretrained`` directory); nothing is unpickled."""
    return Model.from_pretrained(path, device)


_FINETUNE_OWN = ("data", "init", "mode", "n_train", "epochs", "steps", "lrs", "out")


def finetune(
    checkpoint: str | os.PathLike,
    data: str | os.PathLike,
    *,
    n_train: int | None = None,
    epochs: int | None = None,
    steps: int | None = None,
    lrs: float | tuple[float, ...] | list[float] = DEFAULT_LRS,
    mode: str = "full",
    out: str | os.PathLike = "runs",
    **options,
) -> RunRecord:
    """Fine-tune ``checkpoint`` on the pdefm dataset ``data`` (generated, mixed or imported);
    returns the run record, a read-only mapping (``record["checkpoint"]`` is the tuned model,
    ``record["test"]`` its test metrics). ``options`` are any further ``RunConfig`` settings by
    name (seed, batch_size, loss, grad_clip, new_channels, lora_rank, device, progress, ...).
    Without a budget, 100 epochs. Everything is checked before the run folder is created."""
    from pdefm.train.loop import train

    allowed = [f.name for f in dataclasses.fields(RunConfig) if f.name not in _FINETUNE_OWN]
    unknown = [k for k in options if k not in allowed]
    if unknown:
        raise PdefmError(
            f"finetune() has no option {unknown[0]!r}; choose from {', '.join(allowed)}"
        )
    if epochs is None and steps is None:
        epochs = DEFAULT_EPOCHS
    config = RunConfig(
        data=str(_path(data, "data")),
        init=str(_path(checkpoint, "checkpoint")),
        mode=mode,
        n_train=n_train,
        epochs=epochs,
        steps=steps,
        lrs=tuple(lrs) if isinstance(lrs, list) else lrs,
        out=str(_path(out, "out")),
        **options,
    )
    return train(config)


def stage_checkpoint(study_dir: str | os.PathLike, stage: str, seed: int | None = None) -> Path:
    """The checkpoint of pre-training stage ``stage`` of the study run in ``study_dir`` (e.g.
    ``stage_checkpoint("pdefm-demo", "poisson_1-5")``). A stage with several ``seeds`` has one
    per seed: ``seed`` picks one, by default the first listed (the one downstream seed 0
    fine-tunes)."""
    root = _path(study_dir, "study_dir")
    if not isinstance(stage, str):
        raise PdefmError(f"stage must be a stage name, got {stage!r}")
    if seed is not None:
        check_int(seed, "seed (a pre-training seed of the stage)", minimum=0)
    stages = _pretrain_stages(root / "plan.json", root)
    if stage not in stages:
        raise PdefmError(f"no pre-training stage {stage!r} in {root} ({', '.join(stages)})")
    seeds = stages[stage]
    if seed is not None and seed not in seeds:
        listed = ", ".join(str(s) for s in seeds)
        raise PdefmError(f"stage {stage!r} has no pre-training seed {seed} (seeds: {listed})")
    run_id = next(iter(seeds.values())) if seed is None else seeds[seed]
    path = contained_path(root / "runs", run_id, "plan.json run id") / "checkpoint"
    if not ((path / CARD).is_file() or (path / CONFIG).is_file()):
        raise PdefmError(f"stage {stage!r} has not finished; run `pdefm study run` on it")
    return path


def _pretrain_stages(plan_path: Path, root: Path) -> dict[str, dict[int, str]]:
    """Stage name -> {seed: run id}, seeds in plan order (the stage's order), from a study's
    plan.json (one line if absent or damaged); plans older than the seed label: seed 0."""
    if not plan_path.is_file():
        raise PdefmError(f"{root} is not a study directory (no plan.json); run it first")
    try:
        runs = json.loads(plan_path.read_text())["runs"]
        stages: dict[str, dict[int, str]] = {}
        for r in runs:
            if r["kind"] == "pretrain":
                labels = r["labels"]
                stages.setdefault(labels["stage"], {})[labels.get("seed", 0)] = str(r["id"])
        return stages
    except (ValueError, KeyError, TypeError, AttributeError, RecursionError):
        raise PdefmError(f"{plan_path} is damaged; rerun `pdefm study run` to rewrite it") from None
