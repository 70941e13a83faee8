"""The dataset card: a JSON file that describes a dataset and can regenerate it bit for bit.

Written last, atomically, once every split file is final: a directory with a card is a finished
dataset. Imports no torch.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

from pdefm.catalogue import SPLITS
from pdefm.checks import contained_path
from pdefm.errors import PdefmError

CARD_NAME = "card.json"
PROGRESS_NAME = ".pdefm-progress.json"
CARD_FORMAT = "pdefm.dataset"
CARD_VERSION = 1


def load_card(root: str | Path) -> DatasetCard:
    """Read and check the card of the dataset in ``root``: a missing, garbled or escaping card
    is a one-line PdefmError naming the file and the field (see ``check_card``)."""
    root = Path(root)
    path = root / CARD_NAME
    if not path.is_file():
        if root.is_file():
            raise PdefmError(f"{root} is a file; give the dataset directory that holds {CARD_NAME}")
        if (root / PROGRESS_NAME).is_file():
            raise PdefmError(_unfinished(root))
        raise PdefmError(
            f"{root} is not a pdefm dataset (no {CARD_NAME}); create one with "
            "`pdefm generate FAMILY --out DIR`"
        )
    try:
        card = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise PdefmError(
            f"{path} is not valid JSON ({exc.msg if hasattr(exc, 'msg') else exc});"
            " regenerate the dataset"
        ) from None
    except OSError as exc:
        raise PdefmError(f"{path} cannot be read ({exc.strerror or exc})") from None
    return DatasetCard.from_json(card, root)


def _unfinished(root: Path) -> str:
    """The message for a dataset still being written: rerun the command that started it."""
    try:
        command = json.loads((root / PROGRESS_NAME).read_text()).get("command")
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, AttributeError):
        command = None
    command = command or "the `pdefm generate`, `import` or `mix` command that started it"
    return f"{root} holds an unfinished dataset; rerun {command} to finish it"


def check_card(card: object, root: Path) -> None:
    """The fields every reader relies on, with their types; every file a card names must be
    a relative path inside ``root`` (a card cannot send a reader elsewhere)."""
    path = Path(root) / CARD_NAME
    if not isinstance(card, dict):
        raise PdefmError(f"{path} must hold a JSON object, not a {type(card).__name__}")
    if card.get("format") != CARD_FORMAT:
        raise PdefmError(f"{path} is not a pdefm dataset card (format={card.get('format')!r})")
    for key, kind in _REQUIRED.items():
        if key not in card:
            raise PdefmError(f"{path} lacks the field {key!r}; regenerate the dataset")
        if not isinstance(card[key], kind):
            raise PdefmError(
                f"{path} field {key!r} must be {_KIND_NAMES[kind]}, got {card[key]!r:.60}; "
                "regenerate the dataset"
            )
    for split in SPLITS:
        count = _field(card, path, "counts", split)
        if isinstance(count, bool) or not isinstance(count, int) or count < 0:
            raise PdefmError(
                f"{path} field counts.{split} must be a non-negative whole number, got "
                f"{count!r:.60}; regenerate the dataset"
            )
        split_file(root, card, split)
    _check_grid(card, path)
    _check_channels(card, path)


_REQUIRED = {
    "family": str,
    "counts": dict,
    "files": dict,
    "grid": dict,
    "channels": dict,
    "parameter": dict,
    "source_law": dict,
    "spec": dict,
    "command": str,
}
_KIND_NAMES = {str: "a string", dict: "a JSON object", list: "a list"}
MAX_CARD_RESOLUTION = 65536


def _field(card: dict, path: Path, key: str, sub: str) -> object:
    if sub not in card[key]:
        raise PdefmError(f"{path} lacks the field {key}.{sub}; regenerate the dataset")
    return card[key][sub]


def _check_grid(card: dict, path: Path) -> None:
    n = _field(card, path, "grid", "resolution")
    if isinstance(n, bool) or not isinstance(n, int) or not 1 <= n <= MAX_CARD_RESOLUTION:
        raise PdefmError(
            f"{path} field grid.resolution must be a whole number in 1..{MAX_CARD_RESOLUTION}, "
            f"got {n!r:.60}; regenerate the dataset"
        )


def _check_channels(card: dict, path: Path) -> None:
    for key in ("inputs", "outputs"):
        names = _field(card, path, "channels", key)
        if (
            not isinstance(names, list)
            or not names
            or not all(isinstance(name, str) for name in names)
        ):
            raise PdefmError(
                f"{path} field channels.{key} must be a non-empty list of names, got "
                f"{names!r:.60}; regenerate the dataset"
            )
    inputs = card["channels"]["inputs"]
    fields = card["channels"].get("fields", inputs[:1])
    if (
        not isinstance(fields, list)
        or not fields
        or fields[0] != inputs[0]
        or any(f not in inputs for f in fields)
    ):
        raise PdefmError(
            f"{path} field channels.fields must list input channels, the first input first, "
            f"got {fields!r:.60}; regenerate the dataset"
        )


def split_file(root: str | Path, card: dict, split: str) -> Path:
    """The file of ``split`` named by the card's JSON ``card``, which must stay inside
    ``root``."""
    name = card["files"].get(split) if isinstance(card.get("files"), dict) else None
    return contained_path(Path(root), name, f"{Path(root) / CARD_NAME} field files.{split}")


# -- the typed view ------------------------------------------------------------------------------
KINDS = ("generated", "imported", "mixture")
ABRIDGED = (
    "family",
    "equation",
    "family_config",
    "parameter",
    "grid",
    "channels",
    "counts",
    "content_hash",
    "seed",
    "command",
)


@dataclass(frozen=True)
class Member:
    """One member of a mixture, as its card records it."""

    path: str
    family: str
    family_config: dict
    weight: float
    content_hash: dict


@dataclass(frozen=True)
class DatasetCard:
    """A checked dataset card: typed properties over the card's JSON, which is kept as written
    (``to_json`` gives it back unchanged, so cards written by any pdefm version round-trip).

    ``kind`` is explicit: "mixture" (a card with ``members``), "imported" (``spec.kind`` is
    "import") or "generated". Every reader of a card outside this module goes through these
    properties; the writers build the JSON and check it with :meth:`from_json`."""

    data: dict
    root: Path

    @classmethod
    def from_json(cls, data: object, root: str | Path) -> DatasetCard:
        """``data`` checked as the card of ``root`` (a one-line PdefmError otherwise)."""
        check_card(data, Path(root))
        return cls(data, Path(root))

    def to_json(self) -> dict:
        return self.data

    def member_fields(self) -> dict:
        """What a mixture's card records of each member (besides its path and weight)."""
        keys = ("family", "equation", "family_config", "parameter", "channels", "content_hash")
        return {**{k: self.data[k] for k in keys}, "command": self.data.get("command")}

    def abridged(self) -> dict:
        """The fields a checkpoint card keeps of each dataset it was trained on."""
        return {k: self.data[k] for k in ABRIDGED if k in self.data}

    # -- what the dataset is -------------------------------------------------------------------
    @property
    def kind(self) -> str:
        if "members" in self.data:
            return "mixture"
        spec = self.data["spec"]
        return "imported" if spec.get("kind") == "import" else "generated"

    @property
    def is_mixture(self) -> bool:
        return self.kind == "mixture"

    @property
    def family(self) -> str:
        """The PDE family ("mixture" for a mixture, the given name for imported data)."""
        return self.data["family"]

    @property
    def family_config(self) -> dict:
        return self.data.get("family_config", {})

    @property
    def equation(self) -> str:
        return self.data.get("equation", "")

    @property
    def members(self) -> tuple[Member, ...]:
        """A mixture's members in their order (empty for other datasets)."""
        return tuple(
            Member(
                m["path"], m["family"], m.get("family_config", {}), float(m.get("weight", 1.0)),
                m.get("content_hash", {}),
            )
            for m in self.data.get("members", [])
        )  # fmt: skip

    @property
    def families(self) -> tuple[str, ...]:
        """The families of the samples: a mixture's members' (each once), else the family."""
        if self.is_mixture:
            return tuple(dict.fromkeys(m.family for m in self.members))
        return (self.family,)

    # -- layout ----------------------------------------------------------------------------------
    @property
    def grid(self) -> dict:
        """{resolution, domain, periodic, points}."""
        return dict(self.data["grid"])

    @property
    def periodic(self) -> bool:
        """Periodic on every side (generated data, and cards that say nothing)."""
        return bool(self.data["grid"].get("periodic", True))

    @property
    def boundary(self) -> dict[str, str]:
        """side (x_low, x_high, y_low, y_high) -> periodic, dirichlet or neumann."""
        sides = ("x_low", "x_high", "y_low", "y_high")
        return dict(self.data["grid"].get("boundary", dict.fromkeys(sides, "periodic")))

    @property
    def resolution(self) -> int:
        return int(self.data["grid"]["resolution"])

    @property
    def input_channels(self) -> list[str]:
        return list(self.data["channels"]["inputs"])

    @property
    def output_channels(self) -> list[str]:
        return list(self.data["channels"]["outputs"])

    @property
    def field_channels(self) -> list[str]:
        """The inputs that vary in space, in input order: ``channels.fields`` (cards before
        field inputs existed: just the first input, the source)."""
        return list(self.data["channels"].get("fields", self.input_channels[:1]))

    @property
    def constant_channels(self) -> list[str]:
        """The inputs with one value per sample (columns of the split's ``channels``)."""
        fields = set(self.field_channels)
        return [c for c in self.input_channels if c not in fields]

    def count(self, split: str) -> int:
        return int(self.data["counts"][split])

    @property
    def counts(self) -> dict[str, int]:
        return {s: self.count(s) for s in SPLITS}

    def split_file(self, split: str) -> Path:
        """The file of ``split``, inside the dataset folder (see :func:`split_file`)."""
        return split_file(self.root, self.data, split)

    @property
    def content_hash(self) -> dict[str, str]:
        """Per split, the SHA-256 over its blocks' digests."""
        return dict(self.data["content_hash"])

    @property
    def data_hash(self) -> str:
        """One short hash of the samples of every split (what run ids use for the data), and
        of the boundary when it is not periodic: the same arrays imported as periodic and as
        Dirichlet data are two datasets (padding, residuals), so runs on them never share an
        id; periodic datasets keep the hash of their samples alone."""
        text = "".join(self.content_hash.values())
        if not self.periodic:
            text += json.dumps(self.boundary, sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:16]

    @property
    def balance_levels(self) -> int:
        """How many source sparsity levels subsets balance over (a mixture: one)."""
        law = self.data["source_law"]
        return int(law.get("balance_levels", len(law.get("sparsity_levels") or [0])))

    # -- the parameter and statistics ------------------------------------------------------------
    @property
    def parameter_name(self) -> str:
        return self.data["parameter"]["name"]

    @property
    def declared(self) -> dict:
        """The declared parameter law: {kind, low, high[, support]}."""
        return self.data["parameter"]["declared"]

    @property
    def parameter(self) -> dict:
        return self.data["parameter"]

    def realised(self, split: str) -> dict:
        """What the split holds: parameter summary, sparsity counts, acceptance, or a
        mixture's families and members."""
        return self.data["realised"][split]

    @property
    def normalisation(self) -> dict:
        return self.data["normalisation"]

    # -- provenance ------------------------------------------------------------------------------
    @property
    def spec(self) -> dict:
        return self.data["spec"]

    @property
    def command(self) -> str:
        return self.data["command"]

    @property
    def seed(self) -> int | None:
        return self.data.get("seed")

    @property
    def generator_version(self) -> int | None:
        return self.data.get("generator_version")

    @property
    def warnings(self) -> list[str]:
        return list(self.data.get("warnings", []))

    @property
    def generation(self) -> dict[str, float] | None:
        """How long writing the dataset took, summed over the processes that wrote it:
        {"wall_s": wall seconds, "cpu_s": CPU seconds of those processes, all threads};
        None for cards written before it was recorded (or with an unreadable field)."""
        times = self.data.get("generation")
        try:
            return {key: float(times[key]) for key in ("wall_s", "cpu_s")}
        except (KeyError, TypeError, ValueError):
            return None

    @property
    def block_size(self) -> int:
        """Rows per content-hash block (a KeyError if the card lacks it)."""
        return self.data["spec"]["block_size"]
