"""Load YAML keeping line numbers, so that a bad study file is rejected with the line at fault.

Every value of a study file is checked here or in ``spec.py`` before anything is written; a
mistake is one ``PdefmError`` reading ``FILE:LINE: what is wrong; how to fix it``. Duplicate
keys, tags other than the safe YAML types, recursive aliases and absurdly large documents
are refused while loading.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from pdefm import checks
from pdefm.errors import PdefmError

MAX_NODES = 200_000  # a study file is small; aliases can multiply it (a "billion laughs")
MAX_DEPTH = 32  # deeper nesting is a recursive alias, never a study
# YAML 1.1 (PyYAML) reads 1e-3 as a string: such a plain number is accepted where a float is due
_FLOAT_TEXT = re.compile(r"^[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?$")


@dataclass
class Located:
    """A value from the file and where it stood (1-based line)."""

    value: Any
    line: int


def load_located(path: Path) -> Located:
    """Parse ``path`` into nested Located mappings / lists / scalars (YAML safe subset)."""
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise PdefmError(f"{path} is not a UTF-8 text file; give a study YAML file") from None
    except OSError as exc:
        raise PdefmError(f"cannot read study file {path} ({exc.strerror or exc})") from None
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError as exc:
        raise PdefmError(_yaml_error(path, exc)) from None
    if node is None:
        raise PdefmError(f"{path} is empty; see studies/cpu/ for examples")
    return _Converter(path).convert(node, 0)


def _yaml_error(path: Path, exc: yaml.YAMLError) -> str:
    """One line: FILE:LINE, the parser's problem, and a hint for the usual culprit (tabs)."""
    mark = getattr(exc, "problem_mark", None)
    where = f"{path}:{mark.line + 1}" if mark else str(path)
    problem = " ".join(str(getattr(exc, "problem", None) or exc).split())
    hint = "; indent with spaces, not tabs" if "\\t" in problem or "\t" in problem else ""
    return f"{where}: not valid YAML ({problem}){hint}"


class _Converter:
    """YAML nodes -> Located tree, refusing duplicate or non-text keys and runaway aliases."""

    def __init__(self, path: Path):
        self.path = path
        self.nodes = 0
        self.constructor = yaml.SafeLoader("")

    def fail(self, node: yaml.Node, message: str) -> None:
        raise PdefmError(f"{self.path}:{node.start_mark.line + 1}: {message}")

    def convert(self, node: yaml.Node, depth: int) -> Located:
        self.nodes += 1
        if self.nodes > MAX_NODES or depth > MAX_DEPTH:
            self.fail(node, "the document is too large or nests too deeply (a recursive alias?)")
        line = node.start_mark.line + 1
        if isinstance(node, yaml.MappingNode):
            return Located(self._mapping(node, depth), line)
        if isinstance(node, yaml.SequenceNode):
            return Located([self.convert(v, depth + 1) for v in node.value], line)
        try:
            return Located(self.constructor.construct_object(node), line)
        except (yaml.YAMLError, ValueError, TypeError) as exc:
            problem = " ".join(str(getattr(exc, "problem", None) or exc).split())
            self.fail(node, f"cannot read the value {node.value!r} ({problem}); quote it or fix it")
        raise AssertionError("unreachable")

    def _mapping(self, node: yaml.MappingNode, depth: int) -> dict:
        out: dict[str, Located] = {}
        lines: dict[str, int] = {}
        for key, value in node.value:
            if not isinstance(key, yaml.ScalarNode) or key.tag == "tag:yaml.org,2002:merge":
                self.fail(key, "keys must be plain names (no lists, mappings or << merges here)")
            if key.value in out:
                self.fail(
                    key,
                    f"duplicate key {key.value!r} (first on line {lines[key.value]}); "
                    "keep one of them",
                )
            lines[key.value] = key.start_mark.line + 1
            out[key.value] = self.convert(value, depth + 1)
        return out


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

    def wrap(self, item: Located, check: Callable[..., Any], *args, **kwargs) -> Any:
        """``check(item.value, *args, **kwargs)`` (a ``pdefm.checks`` function), its error
        located at ``item``."""
        try:
            return check(item.value, *args, **kwargs)
        except PdefmError as exc:
            self.fail(item, str(exc))
        raise AssertionError("unreachable")

    def mapping(self, item: Located, where: str, allowed: set[str], required=()) -> dict:
        if not isinstance(item.value, dict):
            self.fail(item, f"{where} must be a mapping of keys to values, got {_kind(item)}")
        for key, value in item.value.items():
            if key not in allowed:
                self.fail(value, _unknown_key(key, where, allowed))
        for key in required:
            if key not in item.value:
                self.fail(item, f"{where} needs the key {key!r}")
        return item.value

    def listing(self, item: Located, where: str, unique: bool = False) -> list[Located]:
        """A list (a single value counts as a list of one), non-empty, without repeats if
        ``unique`` (a repeated entry would only run the same thing twice)."""
        value = item.value if isinstance(item.value, list) else [item]
        if not value:
            self.fail(item, f"{where} is empty; list at least one value or remove the key")
        if unique:
            seen: dict[str, int] = {}
            for entry in value:
                key = repr(entry.value)
                if key in seen:
                    self.fail(
                        entry,
                        f"{where} lists {entry.value!r} twice (also line {seen[key]}); remove one",
                    )
                seen[key] = entry.line
        return value

    def integer(self, item: Located, where: str, minimum: int = 1, maximum: int | None = None):
        """A whole number in [minimum, maximum] (``true`` and ``1.0`` are not)."""
        return self.wrap(item, checks.check_int, where, minimum=minimum, maximum=maximum)

    def number(
        self,
        item: Located,
        where: str,
        *,
        positive: bool = False,
        minimum: float | None = None,
        maximum: float | None = None,
    ) -> float:
        """A finite number; a plain ``1e-3`` (a string to YAML 1.1) counts as one."""
        value = item.value
        if isinstance(value, str) and _FLOAT_TEXT.match(value.strip()):
            value = float(value)
        located = Located(value, item.line)
        return self.wrap(
            located, checks.check_float, where, minimum=minimum, maximum=maximum, positive=positive
        )

    def boolean(self, item: Located, where: str) -> bool:
        if not isinstance(item.value, bool):
            self.fail(item, f"{where} must be true or false, got {item.value!r}")
        return item.value

    def name(self, item: Located, what: str) -> str:
        """A plain name (``checks.check_name``): it names a folder inside the study."""
        return self.wrap(item, checks.check_name, what)


def _unknown_key(key: str, where: str, allowed: set[str]) -> str:
    close = difflib.get_close_matches(key, sorted(allowed), n=1)
    hint = f"; did you mean {close[0]!r}?" if close else ""
    return f"unknown key {key!r} in {where}{hint} (allowed: {', '.join(sorted(allowed))})"


def _kind(item: Located) -> str:
    """What the value is, for messages: 'a list', 'the text 'x'', 'nothing'."""
    if item.value is None:
        return "nothing"
    if isinstance(item.value, list):
        return "a list"
    return repr(item.value)
