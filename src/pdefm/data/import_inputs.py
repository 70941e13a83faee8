"""Named inputs of an import: which of the file's arrays are model inputs besides ``source``
(``--inputs`` or the file's ``input_names``), and whether each is a field (N, n, n) or a
constant (N,). A field and a constant of the same name are the same physical input to a
model (channels map by name), so the split is only a matter of storage."""

from __future__ import annotations

import re

from pdefm.data.import_files import Arrays
from pdefm.errors import PdefmError

NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.+-]*$")


OUTPUT = "solution"


FIELD, CONSTANT = "field", "constant"


def declared_inputs(
    arrays: Arrays, inputs: list[str] | None, reserved: tuple[str, ...]
) -> list[str]:
    """The input names besides ``source``, in order: ``inputs`` (the --inputs flag) if given,
    else the file's ``input_names``, else none (the classic layout: source plus
    coefficients). Each must be an array of the file, a valid name, not an output, not a
    reserved array name, and listed once."""
    if inputs is None and "input_names" in arrays.names:
        inputs = _names_array(arrays)
    names = [name for name in (inputs or []) if name != "source"]
    for name in names:
        _check_input_name(arrays, name, reserved)
    duplicate = next((k for k in names if names.count(k) > 1), None)
    if duplicate is not None:
        raise PdefmError(f"input {duplicate!r} is listed twice; list each input once")
    return names


def _names_array(arrays: Arrays) -> list[str]:
    values = arrays.whole("input_names")
    if values.ndim != 1 or values.dtype.kind not in "USO":
        raise PdefmError(
            f"input_names has shape {values.shape} and dtype {values.dtype}: expected a 1-D "
            "array of strings, e.g. np.array(['diffusion_xx', 'diffusion_yy'])"
        )
    return [v.decode() if isinstance(v, bytes) else str(v) for v in values.tolist()]


def _check_input_name(arrays: Arrays, name: str, reserved: tuple[str, ...]) -> None:
    if name == OUTPUT:
        raise PdefmError(
            f"{OUTPUT!r} is listed as an input but it is the output; an array cannot be both: "
            f"drop it from the inputs"
        )
    if not NAME.match(name):
        raise PdefmError(
            f"input name {name!r} is not a channel name; use letters, digits, '_', '-', '.' "
            "(e.g. diffusion_xx)"
        )
    if name in reserved:
        raise PdefmError(
            f"input name {name!r} is the name of a pdefm import array; rename that array"
        )
    if name not in arrays.names:
        found = ", ".join(arrays.names) or "nothing"
        raise PdefmError(
            f"input {name!r} is not an array of {arrays.path} (found: {found}); add it as "
            "(N, n, n) for a field or (N,) for a constant, or drop it from the inputs"
        )


def input_kind(arrays: Arrays, name: str) -> str:
    """``FIELD`` for (N, n, m) or (N, 1, n, m), ``CONSTANT`` for (N,); anything else is a
    one-line error naming the array."""
    shape = tuple(arrays.shape(name))
    if len(shape) == 1:
        return CONSTANT
    if len(shape) == 4 and shape[1] != 1:
        raise PdefmError(
            f"{name} has shape {shape}: {shape[1]} channels in one array; give each channel "
            f"its own name (e.g. {name}_0, {name}_1) and list them as inputs"
        )
    if len(shape) not in (3, 4):
        raise PdefmError(
            f"{name} has shape {shape}: expected (N, n, n) or (N, 1, n, n) for a field, or "
            "(N,) for a constant"
        )
    return FIELD
