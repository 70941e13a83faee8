"""The `pdefm` command. Heavy imports (torch) happen inside the subcommands that need them, so
`pdefm --help` and `pdefm inspect` stay fast."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from pdefm import __version__
from pdefm.errors import PdefmError

FAMILY_NAMES = ("poisson", "advection_diffusion", "helmholtz")
DEFAULT_RANGES = {
    "poisson": (1.0, 5.0),
    "advection_diffusion": (0.2, 1.0),
    "helmholtz": (1.0, 10.0),
}

GENERATE_EPILOG = """\
families and their physics parameter (the axis of distribution shift):
  poisson              -c div(K grad u) = f; e = eigenvalue ratio of K   (default range 1 5)
  advection_diffusion  -(1-l) c div(K grad u) + l v.grad u = f;
                       psi = advection-to-diffusion ratio, met exactly  (default range 0.2 1)
  helmholtz            -c lap u - w u = f; integer w, samples with max|u| > 2 redraw
                       their source so the law of w is kept             (default range 1 10)

examples:
  pdefm generate poisson --out data/poisson-1-5
  pdefm generate poisson --range 5 10 --n-train 512 --seed 1 --out data/poisson-5-10
  pdefm generate helmholtz --resolution 64 --drop-unsampleable --out data/hh-1-10
  pdefm generate --from-card data/poisson-1-5/card.json --out copy   # bit-identical copy

An interrupted run resumes where it stopped when the same command is run again.
"""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="pdefm",
        description="Pre-train neural operators on PDE families, adapt them with few examples, "
        "and measure how that transfer scales.",
    )
    parser.add_argument("--version", action="version", version=f"pdefm {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    _add_generate(sub)
    _add_inspect(sub)
    return parser


def _add_generate(sub) -> None:
    p = sub.add_parser(
        "generate",
        help="generate a dataset of one PDE family (train/val/test HDF5 + card)",
        description="Generate a dataset of one PDE family: sources are sums of Gaussians on a "
        "12x12 lattice at four sparsity levels, solved spectrally in float64, stored as float32.",
        epilog=GENERATE_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("family", nargs="?", help=f"one of {', '.join(FAMILY_NAMES)}")
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
        help="helmholtz: drop values of w that no source can realise instead of "
        "failing (the card records it)",
    )
    p.add_argument(
        "--from-card",
        metavar="CARD",
        help="regenerate exactly the dataset a card describes (other options ignored)",
    )
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(run=_run_generate)


def _add_inspect(sub) -> None:
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


def _spec_from_args(args: argparse.Namespace):
    from pdefm.data.spec import GenerationSpec
    from pdefm.pdes import GaussianLatticeSource

    if args.family is None:
        raise PdefmError(f"give a FAMILY ({', '.join(FAMILY_NAMES)}) or --from-card CARD")
    if args.family not in FAMILY_NAMES:
        raise PdefmError(
            f"unknown PDE family {args.family!r}; choose one of {', '.join(FAMILY_NAMES)}"
        )
    low, high = args.range if args.range else DEFAULT_RANGES[args.family]
    config = {}
    if args.max_abs_u is not None:
        if args.family != "helmholtz":
            raise PdefmError("--max-abs-u applies to helmholtz only; remove it")
        config["max_abs_u"] = args.max_abs_u
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
        spec = GenerationSpec.from_dict(load_card(root)["spec"])
    else:
        spec = _spec_from_args(args)
    out = args.out or _default_out(spec)
    card = generate_dataset(
        spec, out, drop_unsampleable=args.drop_unsampleable, progress=not args.quiet
    )
    counts = card["counts"]
    print(
        f"dataset {out}: {spec.family} {card['parameter']['name']} in "
        f"[{spec.low:g}, {spec.high:g}], {counts['train']}/{counts['val']}/{counts['test']} "
        f"train/val/test at {spec.resolution}x{spec.resolution}"
    )
    print(f"inspect it with: pdefm inspect {out}")
    return 0


def _run_inspect(args: argparse.Namespace) -> int:
    from pdefm.data.inspect import inspect_dataset

    print(
        inspect_dataset(args.directory, png=args.png, n_examples=args.examples, verify=args.verify)
    )
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.run(args)
    except PdefmError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted: rerun the same command to resume", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
