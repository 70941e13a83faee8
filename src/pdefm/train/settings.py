"""Training settings, each declared once: the fields of ``RunConfig`` carry their own schema.

A setting is a ``RunConfig`` field made with :func:`setting`: its default, a help line, its
kind (and range or choices), whether it enters the run id, and where a study file may set it.
From these one declaration the package derives

- the ``pdefm train`` flags (:func:`add_flags`: ``--batch-size``, ``--no-tf32``, ...);
- the study file's keys and their FILE:LINE checks (:func:`study_keys`, :func:`check_value`
  through the study's checker);
- the Python API (``pdefm.finetune(..., **settings)`` takes any setting by name);
- the run id: experiment settings enter it; machine settings (``in_id=False``: device,
  compile, tf32) do not, so the same experiment on another machine is the same run.

Imports no torch, so ``pdefm --help`` stays fast.
"""

from __future__ import annotations

import argparse
import dataclasses
from dataclasses import dataclass, field
from typing import Any

from pdefm.checks import check_choice, check_float, check_int
from pdefm.errors import PdefmError

#: Where a study file may give a setting: in a pre-training stage, in the downstream grid,
#: or in the study's ``machine`` block (settings that do not change results).
STAGE, GRID, MACHINE = "stage", "grid", "machine"


@dataclass(frozen=True)
class Setting:
    """The schema of one setting (the ``metadata["setting"]`` of its RunConfig field).

    kind: "int", "float", "choice", "bool" or "text". ``minimum`` / ``maximum`` bound numbers
    (``positive``: strictly above 0). ``in_id``: part of the run id. ``omit_default``: left out
    of the run id at its default, for settings added after run ids were first published (a run
    configured as before keeps its id); with ``legacy`` it is left out at that value instead
    (a setting whose default moved on, as the protocol version: old runs keep their ids, new
    runs at the new default get new ones). ``study``: where a study file may set it. ``flag``:
    the CLI flag ("" derives ``--name-with-dashes``; None: not a flag of its own)."""

    help: str
    kind: str
    minimum: float | None = None
    maximum: float | None = None
    positive: bool = False
    choices: tuple[str, ...] = ()
    in_id: bool = True
    omit_default: bool = False
    study: tuple[str, ...] = ()
    flag: str | None = ""
    metavar: str | None = None
    legacy: Any = None

    def id_omitted(self, default: Any) -> Any:
        """The value left out of the run id: ``legacy`` when set (the value every run had
        before the setting existed, which need not be today's default), else the default."""
        return default if self.legacy is None else self.legacy

    def flag_name(self, name: str) -> str:
        return self.flag or "--" + name.replace("_", "-")


def setting(default: Any, help: str, kind: str, **schema: Any) -> Any:
    """A RunConfig field whose metadata is its :class:`Setting` (see the module docstring)."""
    return field(default=default, metadata={"setting": Setting(help, kind, **schema)})


def settings_of(cls: type) -> dict[str, tuple[dataclasses.Field, Setting]]:
    """Name -> (field, schema) of every declared setting of the dataclass ``cls``."""
    return {
        f.name: (f, f.metadata["setting"])
        for f in dataclasses.fields(cls)
        if "setting" in f.metadata
    }


def id_exclusions(cls: type) -> tuple[str, ...]:
    """Fields of ``cls`` that are not part of the run id: machine settings (``in_id=False``)
    and bookkeeping fields marked ``metadata={"in_id": False}`` (where the run is written,
    progress bars). Every other field is part of it."""
    return tuple(
        f.name
        for f in dataclasses.fields(cls)
        if not f.metadata.get("in_id", True)
        or ("setting" in f.metadata and not f.metadata["setting"].in_id)
    )


def id_defaults(cls: type) -> dict[str, Any]:
    """Settings left out of the run id at their default (or legacy value): name -> value."""
    return {
        name: s.id_omitted(f.default)
        for name, (f, s) in settings_of(cls).items()
        if s.omit_default and s.in_id
    }


def study_keys(cls: type, where: str) -> tuple[str, ...]:
    """The settings a study file may give in ``where`` (STAGE, GRID or MACHINE)."""
    return tuple(name for name, (_, s) in settings_of(cls).items() if where in s.study)


def check_value(value: Any, schema: Setting, label: str) -> Any:
    """``value`` checked against ``schema``; a one-line PdefmError names ``label`` (a CLI flag
    or a study key) and what it accepts. None passes for an optional setting."""
    if schema.kind == "int":
        return check_int(value, label, minimum=schema.minimum, maximum=schema.maximum)
    if schema.kind == "float":
        return check_float(
            value, label, minimum=schema.minimum, maximum=schema.maximum, positive=schema.positive
        )
    if schema.kind == "bool":
        if not isinstance(value, bool):
            raise PdefmError(f"{label} must be true or false, got {value!r}")
        return value
    if schema.kind == "choice":
        return check_choice(value, label, schema.choices)
    if not isinstance(value, str) or not value:
        raise PdefmError(f"{label} must be text, got {value!r}")
    return value


def add_flags(parser: argparse.ArgumentParser, cls: type, names: tuple[str, ...]) -> None:
    """Add the ``pdefm train`` flag of each setting in ``names`` (defaults: the field's).

    A bool setting that defaults to True becomes ``--no-NAME``; one that defaults to False
    ``--NAME``. Values are checked later, by ``RunConfig.validate``, with the flag's name."""
    declared = settings_of(cls)
    for name in names:
        f, s = declared[name]
        flag = s.flag_name(name)
        if s.kind == "bool":
            action = "store_false" if f.default else "store_true"
            parser.add_argument(flag, dest=name, action=action, help=s.help)
            continue
        text = s.help if f.default is None else f"{s.help} (default {f.default})"
        kwargs: dict[str, Any] = {"dest": name, "default": f.default, "help": text}
        if s.kind in ("int", "float"):
            kwargs["type"] = int if s.kind == "int" else float
        if s.metavar:
            kwargs["metavar"] = s.metavar
        parser.add_argument(flag, **kwargs)
