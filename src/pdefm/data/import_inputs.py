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


def declared_outputs(
    arrays: Arrays, outputs: list[str] | None, reserved: tuple[str, ...]
) -> list[str]:
    """The output names, in order: ``outputs`` (the --outputs flag) if given, else the file's
    ``output_names``, else ``solution``. Each must be a field array of the file, a valid name,
    not ``source`` or another reserved array name (``solution`` aside), and listed once."""
    if outputs is None and "output_names" in arrays.names:
        outputs = strings_of(arrays, "output_names")
    names = list(outputs) if outputs else [OUTPUT]
    for name in names:
        if name != OUTPUT:
            _check_name(arrays, name, reserved, "output")
    duplicate = next((k for k in names if names.count(k) > 1), None)
    if duplicate is not None:
        raise PdefmError(f"output {duplicate!r} is listed twice; list each output once")
    return names


def declared_inputs(
    arrays: Arrays,
    inputs: list[str] | None,
    reserved: tuple[str, ...],
    outputs: tuple[str, ...] | list[str] = (OUTPUT,),
) -> list[str]:
    """The input names besides ``source``, in order: ``inputs`` (the --inputs flag) if given,
    else the file's ``input_names``, else none (the classic layout: source plus
    coefficients). Each must be an array of the file, a valid name, not an output, not a
    reserved array name, and listed once."""
    if inputs is None and "input_names" in arrays.names:
        inputs = strings_of(arrays, "input_names")
    names = [name for name in (inputs or []) if name != "source"]
    for name in names:
        if name in outputs:
            raise PdefmError(
                f"{name!r} is listed as an input but it is an output; an array cannot be both: "
                "drop it from the inputs or the outputs"
            )
        _check_name(arrays, name, reserved, "input")
    duplicate = next((k for k in names if names.count(k) > 1), None)
    if duplicate is not None:
        raise PdefmError(f"input {duplicate!r} is listed twice; list each input once")
    return names


def strings_of(arrays: Arrays, key: str) -> list[str]:
    """A 1-D array of strings (str or bytes, NPZ, HDF5 or .pt) as Python strings."""
    values = arrays.whole(key)
    if values.ndim != 1 or values.dtype.kind not in "USO":
        raise PdefmError(
            f"{key} has shape {values.shape} and dtype {values.dtype}: expected a 1-D array of "
            "strings, e.g. np.array(['a', 'b'])"
        )
    out = [v.decode() if isinstance(v, bytes) else v for v in values.tolist()]
    if not all(isinstance(v, str) for v in out):
        raise PdefmError(f"{key} holds non-strings; give it as np.array(['a', 'b'])")
    return out


def _check_name(arrays: Arrays, name: str, reserved: tuple[str, ...], role: str) -> None:
    """An input or output name: a channel name, not a reserved array, an array of the file."""
    if not NAME.match(name):
        raise PdefmError(
            f"{role} name {name!r} is not a channel name; use letters, digits, '_', '-', '.' "
            "(e.g. diffusion_xx)"
        )
    if name in reserved:
        raise PdefmError(
            f"{role} name {name!r} is the name of a pdefm import array; rename that array"
        )
    if name not in arrays.names:
        found = ", ".join(arrays.names) or "nothing"
        shape = "(N, n, n) for a field or (N,) for a constant" if role == "input" else "(N, n, n)"
        raise PdefmError(
            f"{role} {name!r} is not an array of {arrays.path} (found: {found}); add it as "
            f"{shape}, or drop it from the {role}s"
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
