"""`pdefm generate | inspect | import | mix`: making and reading datasets."""

from __future__ import annotations

import argparse
import sys

from pdefm import catalogue
from pdefm.errors import PdefmError

GENERATE_EPILOG = """\
families and their physics parameter (the axis of distribution shift):
  poisson              -c div(K grad u) = f; e = eigenvalue ratio of K   (default range 1 5)
  advection_diffusion  -(1-l) c div(K grad u) + l v.grad u = f;
                       psi = advection-to-diffusion ratio, met exactly  (default range 0.2 1)
  helmholtz            -c lap u - w u = f; integer w, samples with max|u| > 2 redraw
                       their source so the law of w is kept             (default range 1 10)
  darcy                -c div(a(x) grad u) = f, a a random field in [1, contrast];
                       contrast = max a / min a; solved by PCG (float64) to a residual of
                       1e-10, stored per sample                         (default range 1 10)
                       constants: boundary dirichlet|periodic, forcing constant|lattice
                       (constant f = 1 needs dirichlet), field smooth|threshold,
                       length_scale (default 0.5)

helmholtz values of w next to a resonance accept few sources: w = 2 accepts about 1 source
in 6,000 at the densest sparsity level. Each sample may draw --redraw-budget sources (default
2000); a w whose measured acceptance is too low for that budget is refused before anything is
written, with the rate and the budget that would suffice. Drop such values with
--drop-unsampleable, or keep them with a larger --redraw-budget (slower: every draw is a solve).

limits: --resolution even, 4 to 4096; counts 1 to 100,000,000 per split; --sigma in
[2/4096, 0.5]; poisson e <= 1e4, advection_diffusion psi <= 1e3, helmholtz w <= 1000, darcy
contrast <= 1e4. Requests
needing more memory or disk than the machine has are refused with the estimate.

examples:
  pdefm generate poisson --out data/poisson-1-5
  pdefm generate poisson --range 5 10 --n-train 512 --seed 1 --out data/poisson-5-10
  pdefm generate helmholtz --resolution 64 --drop-unsampleable --out data/hh-1-10
  pdefm generate darcy --resolution 64 --constant field=threshold --out data/darcy-1-10
  pdefm generate --from-card data/poisson-1-5/card.json --out copy   # bit-identical copy

An interrupted run resumes where it stopped when the same command is run again.
"""


def add_generate(sub) -> None:
    p = sub.add_parser(
        "generate",
        help="generate a dataset of one PDE family (train/val/test HDF5 + card)",
        description="Generate a dataset of one PDE family: sources are sums of Gaussians on a "
        "12x12 lattice at four sparsity levels (or, for darcy, a constant forcing), solved in "
        "float64 (spectrally; darcy by conjugate gradients), stored as float32.",
        epilog=GENERATE_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("family", nargs="?", help=f"one of {', '.join(catalogue.family_names())}")
    p.add_argument(
        "--range",
        nargs=2,
        type=float,
        metavar=("LOW", "HIGH"),
        help="declared range of the physics parameter (default: the study's "
        "pre-training range of the family)",
    )
    p.add_argument("--n-train", type=int, default=1024, help="training samples (default 1024)")
    p.add_argument("--n-val", type=int, default=128, help="validation samples (default 128)")
    p.add_argument("--n-test", type=int, default=128, help="test samples (default 128)")
    p.add_argument(
        "--resolution", type=int, default=128, help="grid size n for n x n (default 128)"
    )
    p.add_argument("--seed", type=int, default=0, help="user seed (default 0)")
    p.add_argument("--out", help="output directory (default data/FAMILY_LOW-HIGH_nRES)")
    p.add_argument("--sigma", type=float, help="Gaussian width of the sources (default 1/32)")
    p.add_argument(
        "--max-abs-u",
        type=float,
        help="helmholtz: redraw sources whose solution exceeds this (default 2)",
    )
    p.add_argument(
        "--drop-unsampleable",
        action="store_true",
        help="helmholtz: drop values of w whose measured acceptance is too low for the "
        "redraw budget instead of failing (the card records it)",
    )
    p.add_argument(
        "--redraw-budget",
        type=int,
        metavar="N",
        help="helmholtz: sources a sample may draw before it counts as unsampleable (default 2000)",
    )
    p.add_argument(
        "--constant",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="set one of the family's constants (repeatable), e.g. for darcy "
        "--constant boundary=dirichlet --constant forcing=constant --constant field=threshold",
    )
    p.add_argument(
        "--from-card",
        metavar="CARD",
        help="regenerate exactly the dataset a card describes (other options ignored)",
    )
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(run=_run_generate)


def add_inspect(sub) -> None:
    p = sub.add_parser(
        "inspect",
        help="summarise a dataset and plot examples and parameter histograms",
        description="Print a dataset's card summary and write a PNG with source / solution "
        "examples (parameter value in each title) and the realised parameter histogram.",
    )
    p.add_argument("directory", help="dataset directory (holds card.json)")
    p.add_argument("--png", help="where to write the figure (default DIR/inspect.png)")
    p.add_argument("--examples", type=int, default=4, help="examples to plot (default 4)")
    p.add_argument(
        "--verify", action="store_true", help="also re-hash every split and compare with the card"
    )
    p.set_defaults(run=_run_inspect)


MIX_EPILOG = """\
The union channel layout (fixed order; a family's missing coefficients are 0):
  source, diffusion_xx, diffusion_yy, diffusion_xy, velocity_x, velocity_y,
  helmholtz_c, helmholtz_w     (then any other channel, e.g. from imported data)
--masks adds has_X for every coefficient X (1 where the sample's family has X).

example (the study's mixed pre-training set, SYS-4):
  pdefm mix data/poisson-1-5 data/ad-0.2-1 data/hh-1-10 --n-train 3072 --out data/mix
  pdefm train data/mix --model fno-tiny --epochs 50
"""


def add_mix(sub) -> None:
    p = sub.add_parser(
        "mix",
        help="mix datasets of several families into one (mixed-physics pre-training)",
        description="Write a dataset that draws from several datasets (weights as "
        "DIR:WEIGHT, default 1) on the union channel layout, with normalisation statistics "
        "per family. Samples are copied; member splits must hold enough samples.",
        epilog=MIX_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("members", nargs="+", metavar="DIR[:WEIGHT]", help="member datasets")
    p.add_argument(
        "--out",
        required=True,
        help="output directory (new or empty); rerun the same command to resume an interrupted mix",
    )
    p.add_argument("--n-train", type=int, help="training samples (default: all members' sum)")
    p.add_argument("--n-val", type=int, help="validation samples (default: members' sum)")
    p.add_argument("--n-test", type=int, help="test samples (default: members' sum)")
    p.add_argument("--masks", action="store_true", help="add has_X presence channels")
    p.add_argument("--seed", type=int, default=0, help="which samples and order (default 0)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(run=_run_mix)


def _run_mix(args: argparse.Namespace) -> int:
    from pdefm.data.card import load_card
    from pdefm.data.mixture import MixtureSpec, mix_datasets

    members = tuple(_member_arg(m) for m in args.members)
    given = {s: getattr(args, f"n_{s}") for s in ("train", "val", "test")}
    for split, n in given.items():  # 0 is a count to refuse, not "use the default"
        if n is not None and n < 1:
            raise PdefmError(f"--n-{split} must be >= 1, got {n}; omit it to use every sample")
    cards = [load_card(path) for path, _ in members]
    counts = {s: n if n is not None else sum(c.count(s) for c in cards) for s, n in given.items()}
    spec = MixtureSpec(
        members, counts["train"], counts["val"], counts["test"], args.masks, args.seed
    )
    card = mix_datasets(spec, args.out, progress=not args.quiet)
    families = ", ".join(f"{f} {n}" for f, n in card.realised("train")["families"].items())
    print(f"mixture {args.out}: train {families}; channels {', '.join(card.input_channels)}")
    print(f"train on it with: pdefm train {args.out} --model fno-tiny --epochs 50")
    return 0


def _member_arg(text: str) -> tuple[str, float]:
    from pathlib import Path

    if ":" not in text or Path(text).is_dir():  # a directory whose name holds ':' has weight 1
        return text, 1.0
    path, _, weight = text.rpartition(":")
    try:
        return path, float(weight)
    except ValueError:
        raise PdefmError(f"member {text!r}: the weight after ':' must be a number") from None


def _spec_from_args(args: argparse.Namespace):
    from pdefm.data.spec import GenerationSpec
    from pdefm.pdes import GaussianLatticeSource

    names = ", ".join(catalogue.family_names())
    if args.family is None:
        raise PdefmError(f"give a FAMILY ({names}) or --from-card CARD")
    if not catalogue.is_family(args.family):
        raise PdefmError(f"unknown PDE family {args.family!r}; choose one of {names}")
    low, high = args.range if args.range else catalogue.family(args.family).default_range
    config = {}
    if args.max_abs_u is not None:
        if args.family != "helmholtz":
            raise PdefmError("--max-abs-u applies to helmholtz only; remove it")
        config["max_abs_u"] = args.max_abs_u
    if args.redraw_budget is not None:
        if args.family != "helmholtz":
            raise PdefmError("--redraw-budget applies to helmholtz only; remove it")
        config["redraw_budget"] = args.redraw_budget
    config.update(_constants(args.constant))
    source = (
        GaussianLatticeSource() if args.sigma is None else GaussianLatticeSource(sigma=args.sigma)
    )
    return GenerationSpec(
        args.family,
        low,
        high,
        args.n_train,
        args.n_val,
        args.n_test,
        resolution=args.resolution,
        seed=args.seed,
        family_config=config,
        source=source,
    )


def _constants(items: list[str]) -> dict:
    """``KEY=VALUE`` items as family constants: numbers where they parse, else strings."""
    out: dict = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise PdefmError(f"--constant {item!r} is not KEY=VALUE, e.g. boundary=dirichlet")
        try:
            out[key.strip()] = float(value)
        except ValueError:
            out[key.strip()] = value.strip()
    return out


def _default_out(spec) -> str:
    return f"data/{spec.family}_{spec.low:g}-{spec.high:g}_n{spec.resolution}"


def _run_generate(args: argparse.Namespace) -> int:
    from pdefm._malloc import keep_freed_memory
    from pdefm.data.generate import generate_dataset

    keep_freed_memory()
    if args.from_card:
        from pathlib import Path

        from pdefm.data.card import load_card
        from pdefm.data.spec import GenerationSpec

        card_path = Path(args.from_card)
        root = card_path if card_path.is_dir() else card_path.parent
        card = load_card(root)
        if card.kind == "imported":
            raise PdefmError(
                f"{root} was imported, not generated; recreate it with: {card.command} --out DIR"
            )
        spec = GenerationSpec.from_dict(card.spec, f"{root / 'card.json'} field spec")
        _warn_if_not_bit_identical(card, root)
    else:
        spec = _spec_from_args(args)
    out = args.out or _default_out(spec)
    card = generate_dataset(
        spec, out, drop_unsampleable=args.drop_unsampleable, progress=not args.quiet
    )
    counts = card.counts
    print(
        f"dataset {out}: {spec.family} {card.parameter_name} in "
        f"[{spec.low:g}, {spec.high:g}], {counts['train']}/{counts['val']}/{counts['test']} "
        f"train/val/test at {spec.resolution}x{spec.resolution}"
    )
    print(f"inspect it with: pdefm inspect {out}")
    return 0


def _warn_if_not_bit_identical(card, root) -> None:
    """Helmholtz cards written before the redraw budget existed (no ``redraw_budget`` in
    their family config) drew replacement sources in another order: the law of w is the same,
    but samples that needed redraws come out different."""
    if card.family == "helmholtz" and "redraw_budget" not in card.family_config:
        print(
            f"warning: {root} predates the Helmholtz redraw budget; samples that needed "
            "redrawing will differ from the original (same law of w, not the same bytes)",
            file=sys.stderr,
        )


def _run_inspect(args: argparse.Namespace) -> int:
    from pdefm.data.inspect import inspect_dataset

    print(
        inspect_dataset(args.directory, png=args.png, n_examples=args.examples, verify=args.verify)
    )
    return 0
