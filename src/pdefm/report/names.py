"""Human names for the report's figures: tasks, pre-training stages and methods in words.

Dataset and stage names such as ``poisson_5-10`` are the study author's shorthand; a reader
of a figure wants "Poisson, e in [5, 10]". Everything here reads results rows
(:class:`pdefm.study.row.ResultRow`) and needs neither torch nor matplotlib.
"""

from __future__ import annotations

import math
from decimal import Decimal

from pdefm import catalogue
from pdefm.catalogue import MIXTURE
from pdefm.report.table import CurveKey
from pdefm.study.row import ResultRow


def plain_number(x: float, digits: int = 6) -> str:
    """``x`` in plain decimal notation with at most ``digits`` significant digits:
    5.0 -> "5", 0.2 -> "0.2", 1e-3 -> "0.001", 1200.0 -> "1200" (never "1e-03")."""
    if not math.isfinite(x):
        return str(x)
    # round first so that 0.1 + 0.2 prints as 0.3, then drop the exponent and trailing zeros
    text = format(Decimal(f"{x:.{digits}g}").normalize(), "f")
    return "0" if text in ("-0", "") else text


def _is_number(x: object) -> bool:
    """True for a finite int or float (None, NaN and text are not)."""
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


def family_name(family: str | None) -> str:
    """ "Poisson", "Advection-diffusion", ...; an unknown family as given ("?" for None)."""
    return catalogue.family_title(family)


def task_title(
    family: str | None, parameter: str | None, low: float | None, high: float | None
) -> str:
    """E.g. "Poisson, e in [5, 10]"; just the family's name for a mixture or when the range
    (or the parameter's name) is missing."""
    name = family_name(family)
    if family == MIXTURE or not (_is_number(low) and _is_number(high)) or not parameter:
        return name
    return f"{name}, {parameter} in [{plain_number(low)}, {plain_number(high)}]"


def row_task_title(row: ResultRow) -> str:
    """The title of a results row's downstream task; the raw task name when the row does not
    say its family. When another task of the study shares its family and range
    (``row.shared_range``), the task's name follows: "Darcy, contrast in [1, 10], task
    darcy_per" (no parentheses: titles are often followed by a parenthesis of their own)."""
    if not row.family:
        return str(row.task)
    title = task_title(row.family, row.parameter, row.task_low, row.task_high)
    return f"{title}, task {row.task}" if row.shared_range else title


def pretraining_title(init: str, row: ResultRow | None) -> str:
    """What the init stage was pre-trained on, e.g. "Poisson, e in [1, 5]"; "the mixed
    pre-training (stage NAME)" for a mixture stage; "stage NAME" when the row does not say."""
    family = row.init_family if row is not None else None
    if family == MIXTURE:
        return f"the mixed pre-training (stage {init})"
    if family in (None, "none") or row is None:
        return f"stage {init}"
    low, high = row.pretrain_low, row.pretrain_high
    if not (_is_number(low) and _is_number(high)):
        return f"{family_name(family)} (stage {init})"
    return task_title(family, catalogue.parameter_name(family) or "parameter", low, high)


def method_label(key: CurveKey, row: ResultRow | None = None, with_model: bool = True) -> str:
    """A curve's legend text in words, from its key and one of its rows (for the
    pre-training range; without one the stage is named instead):

    - "trained from scratch (fno-tiny)"
    - "fine-tuned from Poisson, e in [1, 5] (fno-tiny)", plus " · mode lora" for a mode other
      than full
    - "zero-shot: pre-trained on Poisson, e in [1, 5] (fno-tiny)"

    ``with_model=False`` leaves out the model preset (for figures whose axis is model size).
    """
    model = f" ({key.model})" if with_model else ""
    if key.method == "scratch":
        return f"trained from scratch{model}"
    source = pretraining_title(key.init, row)
    if key.method == "zero-shot":
        if row is not None and row.init_family == MIXTURE:
            return f"zero-shot: {source}{model}"
        return f"zero-shot: pre-trained on {source}{model}"
    mode = "" if key.mode == "full" else f" · mode {key.mode}"
    return f"fine-tuned from {source}{model}{mode}"
