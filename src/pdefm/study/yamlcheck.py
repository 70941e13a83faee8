"""Load YAML keeping line numbers, so that a bad study file is rejected with the line at fault."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from pdefm.errors import PdefmError


@dataclass
class Located:
    """A value from the file and where it stood (1-based line)."""

    value: Any
    line: int


def load_located(path: Path) -> Located:
    """Parse ``path`` into nested Located mappings / lists / scalars (YAML safe subset)."""
    try:
        node = yaml.compose(path.read_text(), Loader=yaml.SafeLoader)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{path}:{mark.line + 1}" if mark else str(path)
        raise PdefmError(f"{where}: not valid YAML ({getattr(exc, 'problem', exc)})") from None
    except OSError as exc:
        raise PdefmError(f"cannot read study file {path} ({exc.strerror})") from None
    if node is None:
        raise PdefmError(f"{path} is empty; see studies/cpu/ for examples")
    return _convert(node)


def _convert(node: yaml.Node) -> Located:
    line = node.start_mark.line + 1
    if isinstance(node, yaml.MappingNode):
        return Located({k.value: _convert(v) for k, v in node.value}, line)
    if isinstance(node, yaml.SequenceNode):
        return Located([_convert(v) for v in node.value], line)
    return Located(yaml.SafeLoader("").construct_object(node), line)


def plain(item: Located) -> Any:
    """Strip locations: Located tree -> plain Python values."""
    if isinstance(item.value, dict):
        return {k: plain(v) for k, v in item.value.items()}
    if isinstance(item.value, list):
        return [plain(v) for v in item.value]
    return item.value


class Checker:
    """Small helpers that raise ``FILE:LINE: message`` errors."""

    def __init__(self, path: Path):
        self.path = path

    def fail(self, item: Located, message: str) -> None:
        raise PdefmError(f"{self.path}:{item.line}: {message}")

    def mapping(self, item: Located, where: str, allowed: set[str], required=()) -> dict:
        if not isinstance(item.value, dict):
            self.fail(item, f"{where} must be a mapping of keys to values")
        for key, value in item.value.items():
            if key not in allowed:
                self.fail(
                    value, f"unknown key {key!r} in {where}; allowed: {', '.join(sorted(allowed))}"
                )
        for key in required:
            if key not in item.value:
                self.fail(item, f"{where} needs the key {key!r}")
        return item.value

    def listing(self, item: Located, where: str) -> list[Located]:
        value = item.value if isinstance(item.value, list) else [item]
        if not value:
            self.fail(item, f"{where} is empty")
        return value
