"""The ``datasets`` section of a study file: generated datasets (a GenerationSpec each) and
mixtures of them, checked, and one data run per dataset."""

from __future__ import annotations

from pdefm.data.mixture import member_quotas
from pdefm.data.spec import GenerationSpec
from pdefm.errors import PdefmError
from pdefm.pdes import GaussianLatticeSource
from pdefm.study.runs import StudyMixture, StudyRun, short_hash
from pdefm.study.spec_checks import (
    DATA_KEYS,
    MAX_SAMPLES,
    MIX_KEYS,
    SCALAR_CHECKS,
    SPLITS,
    check_family,
    check_range,
    check_seed,
    mapping_keys,
    study_words,
)
from pdefm.study.yamlcheck import Checker, Located


def check_datasets(check: Checker, item: Located, defaults: dict[str, Located]) -> dict:
    entries = check.mapping(item, "datasets", mapping_keys(item))
    if not entries:
        check.fail(item, "datasets is empty; declare at least one dataset")
    out: dict = {}
    folded: dict[str, str] = {}
    for name, entry in entries.items():
        check.name(Located(name, entry.line), "the dataset name")
        if name.lower() in folded:  # data/NAME folders clash on macOS and Windows
            check.fail(
                entry,
                f"datasets {folded[name.lower()]!r} and {name!r} differ only in case and "
                "would share one folder on some systems; rename one",
            )
        folded[name.lower()] = name
        if isinstance(entry.value, dict) and "mixture" in entry.value:
            out[name] = (_mixture(check, name, entry, out, defaults), False)
            continue
        fields = check.mapping(
            entry,
            f"datasets.{name}",
            DATA_KEYS,
            required=("family", "range", "n_train", "n_val", "n_test"),
        )
        out[name] = _generation_spec(check, name, entry, fields, defaults)
    return out


def _generation_spec(check, name, entry, fields, defaults) -> tuple[GenerationSpec, bool]:
    where = f"datasets.{name}"
    family = check_family(check, fields["family"], f"{where}.family")
    low, high = check_range(check, fields["range"], f"{where}.range")
    counts = [check.integer(fields[k], f"{where}.{k}", 1, MAX_SAMPLES) for k in SPLITS]
    given = {**defaults, **{k: fields[k] for k in ("resolution", "seed", "sigma") if k in fields}}
    values = {k: SCALAR_CHECKS[k](check, v, f"{where}.{k}") for k, v in given.items()}
    config = {}
    if "max_abs_u" in fields:
        if family != "helmholtz":
            check.fail(
                fields["max_abs_u"], f"{where}.max_abs_u applies to helmholtz only; remove it"
            )
        config["max_abs_u"] = check.number(fields["max_abs_u"], f"{where}.max_abs_u", positive=True)
    if "constants" in fields:
        config.update(_constants(check, fields["constants"], f"{where}.constants"))
    drop = False
    if "drop_unsampleable" in fields:
        drop = check.boolean(fields["drop_unsampleable"], f"{where}.drop_unsampleable")
    sigma = values.get("sigma")
    source = GaussianLatticeSource() if sigma is None else GaussianLatticeSource(sigma=sigma)
    try:
        spec = GenerationSpec(
            family,
            low,
            high,
            *counts,
            resolution=values.get("resolution", 128),
            seed=values.get("seed", 0),
            family_config=config,
            source=source,
        )
        spec.validate()
    except (PdefmError, ValueError, TypeError) as exc:
        check.fail(entry, f"{where}: {study_words(str(exc))}")
    return spec, drop


def _constants(check: Checker, item: Located, where: str) -> dict:
    """A family's constants, e.g. ``{boundary: dirichlet, field: threshold}`` for darcy:
    numbers or words; which keys and values the family takes is checked by the family."""
    if not isinstance(item.value, dict):
        check.fail(item, f"{where} must be a mapping of the family's constants, e.g. "
                         "{boundary: dirichlet}")  # fmt: skip
    out: dict = {}
    for key, value in item.value.items():
        v = value.value
        if isinstance(v, bool) or not isinstance(v, int | float | str):
            check.fail(value, f"{where}.{key} must be a number or a word, got {v!r}")
        out[key] = float(v) if isinstance(v, int | float) else v
    return out


def _mixture(check: Checker, name: str, entry: Located, earlier: dict, defaults) -> StudyMixture:
    where = f"datasets.{name}"
    fields = check.mapping(entry, where, MIX_KEYS, required=("mixture", *SPLITS))
    listed = fields["mixture"]
    members = []
    for member, weight in check.mapping(listed, f"{where}.mixture", mapping_keys(listed)).items():
        if member not in earlier or isinstance(earlier[member][0], StudyMixture):
            check.fail(
                weight,
                f"{where}.mixture: {member!r} is not a generated dataset listed above it "
                f"(datasets so far: {', '.join(earlier) or 'none'})",
            )
        w = check.number(weight, f"{where}.mixture.{member} (its weight)", positive=True)
        members.append((member, w))
    if len(members) < 2:
        check.fail(listed, f"{where}.mixture needs at least two datasets")
    counts = {k: check.integer(fields[k], f"{where}.{k}", 1, MAX_SAMPLES) for k in SPLITS}
    _check_members(check, listed, where, members, counts, earlier)
    masks = check.boolean(fields["masks"], f"{where}.masks") if "masks" in fields else False
    seed_item = fields.get("seed", defaults.get("seed"))  # the study-wide seed is the default
    seed = check_seed(check, seed_item, f"{where}.seed") if seed_item is not None else 0
    return StudyMixture(tuple(members), **counts, masks=masks, seed=seed)


def _check_members(check, item: Located, where: str, members, counts, earlier) -> None:
    """Members share one grid and hold enough samples for their share of every split."""
    specs = {m: earlier[m][0] for m, _ in members}
    grids = {s.resolution for s in specs.values()}
    if len(grids) > 1:
        listing = ", ".join(f"{m}: {s.resolution}" for m, s in specs.items())
        check.fail(item, f"{where}.mixture members differ in resolution ({listing}); use one")
    for split, n in counts.items():
        quotas = member_quotas([w for _, w in members], n)
        for (member, _), quota in zip(members, quotas, strict=True):
            have = getattr(specs[member], split)
            if quota > have:
                check.fail(
                    item,
                    f"{where} takes {quota} {split[2:]} samples from {member!r}, which has "
                    f"{have}; lower {where}.{split} or raise {member}'s {split}",
                )


def data_run(name: str, spec, data_runs: dict[str, StudyRun]) -> StudyRun:
    labels = {"name": name, "family": spec.family}
    if isinstance(spec, StudyMixture):
        depends = tuple(data_runs[m].id for m, _ in spec.members)
        run_id = short_hash(["mix", spec.to_dict(), depends])
        return StudyRun(run_id, "data", labels, depends)
    run_id = short_hash(["data", spec.to_dict()])
    return StudyRun(run_id, "data", labels, data=spec)
