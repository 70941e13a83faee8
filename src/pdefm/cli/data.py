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

helmholtz values of w next to a resonance accept few sources: w = 2 accepts about 1 source
in 6,000 at the densest sparsity level. Each sample may draw --redraw-budget sources (default
2000); a w whose measured acceptance is too low for that budget is refused before anything is
written, with the rate and the budget that would suffice. Drop such values with
--drop-unsampleable, or keep them with a larger --redraw-budget (slower: every draw is a solve).

limits: --resolution even, 4 to 4096; counts 1 to 100,000,000 per split; --sigma in
[2/4096, 0.5]; poisson e <= 1e4, advection_diffusion psi <= 1e3, helmholtz w <= 1000. Requests
needing more memory or disk than the machine has are refused with the estimate.

examples:
  pdefm generate poisson --out data/poisson-1-5
  pdefm generate poisson --range 5 10 --n-train 512 --seed 1 --out data/poisson-5-10
  pdefm generate helmholtz --resolution 64 --drop-unsampleable --out data/hh-1-10
  pdefm generate --from-card data/poisson-1-5/card.json --out copy   # bit-identical copy

An interrupted run resumes where it stopped when the same command is run again.
"""


def add_generate(sub) -> None:
    p = sub.add_parser(
        "generate",
        help="generate a dataset of one PDE family (train/val/test HDF5 + card)",
        description="Generate a dataset of one PDE family: sources are sums of Gaussians on a "
        "12x12 lattice at four sparsity levels, solved spectrally in float64, stored as float32.",
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


IMPORT_EPILOG = """\
the file (NPZ, HDF5 top-level datasets, or a torch.save'd dict of tensors) with these names:
  source             (N, n, n) or (N, 1, n, n)  the forcing field f; (N,) for a constant one
  solution           (N, n, n) or (N, 1, n, n)  the target field u (one output per dataset)
  NAME               (N, n, n) or (N,)  any other input, listed with --inputs (or in the
                              file's input_names): a field (e.g. a permeability a(x)) or a
                              constant per sample; a field and a constant of the same name are
                              the same input to a model
  coefficients       (N, K)   optional: constant per-sample input channels
  coefficient_names  (K,)     strings, required with coefficients; to fine-tune a pdefm
                              checkpoint use its channel names (channels map by name):
                              diffusion_xx diffusion_yy diffusion_xy velocity_x velocity_y
                              helmholtz_c helmholtz_w
  parameter          (N,)     optional: the physics parameter per sample (the shift axis)
  parameter_name     string   optional name of the parameter
  family, equation   strings  optional descriptions (--family / --equation override them)
  x, y               (n,) or (n, n)  optional coordinates (2-D ones say which axis is x)
  x_axis, boundary   int, string     optional: as --x-axis and --boundary

The grid is n x n, n >= 8. Say which array axis is x (--x-axis, or x_axis / 2-D coordinate
arrays x, y in the file) and the boundary of each side (--boundary, default periodic); both go
on the card. Training divides f and u by the same per-example factor, which assumes u is
linear in f. Samples are split at random (seeded) into train/val/test; the card records the
file's path and SHA-256.

example:
  np.savez("mydata.npz", source=f, solution=u,             # f, u: (N, 64, 64)
           coefficients=np.stack([kxx, kyy, kxy], 1),      # (N, 3)
           coefficient_names=np.array(["diffusion_xx", "diffusion_yy", "diffusion_xy"]),
           parameter=e, parameter_name="e", family="darcy-own")
  pdefm import mydata.npz --x-axis 0 --out data/mydata
  pdefm train data/mydata --init CHECKPOINT --n-train 64 --epochs 50

  # a coefficient field with constant forcing: a Poisson checkpoint fine-tunes on it by name
  np.savez("darcy.npz", source=np.ones(N), solution=u,     # u: (N, 64, 64)
           diffusion_xx=a, diffusion_yy=a, diffusion_xy=np.zeros(N))   # a: (N, 64, 64)
  pdefm import darcy.npz --inputs diffusion_xx,diffusion_yy,diffusion_xy --x-axis 0 \\
      --boundary dirichlet --out data/darcy

two public layouts are recognised by their content and read as they are:
  PDEBench 2D Darcy flow (HDF5: nu, tensor, x-coordinate, y-coordinate): imported as source =
      beta (a constant; from the file name, e.g. ..._beta1.0_..., or --beta), diffusion_xx =
      diffusion_yy = nu, diffusion_xy = 0, solution = tensor[:, 0], boundary dirichlet, family
      pdebench-darcy. Say which axis is x: we believe PDEBench stores [sample, x, y]
      (--x-axis 0); check it on your copy
  pdefm import 2D_DarcyFlow_beta1.0_Train.hdf5 --x-axis 0 --out data/pdebench-darcy-1
  The Well-style HDF5 (t0_fields, scalars, dimensions, boundary_conditions; e.g. written by
      `pdefm export`): inputs pdefm_inputs (default: source, the other fields, the scalars),
      output pdefm_outputs (default solution), fields x first, grid and boundary as stored
  pdefm import exported.h5 --out data/again

See docs/own-data.md.
"""


def add_import(sub) -> None:
    p = sub.add_parser(
        "import",
        help="import your own data (NPZ or HDF5 arrays) as a pdefm dataset",
        description="Validate an NPZ or HDF5 file of sources, solutions and optional "
        "coefficients and write it as a pdefm dataset (train/val/test HDF5 + card) to train "
        "or fine-tune on.",
        epilog=IMPORT_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("file", help="the .npz or .h5 file to import")
    p.add_argument(
        "--out",
        required=True,
        help="new (or empty) dataset directory; rerun the same command to resume an "
        "interrupted import",
    )
    p.add_argument("--family", help="dataset family name (default: the file's, else custom)")
    p.add_argument("--equation", help="equation text for the card (default: the file's)")
    p.add_argument(
        "--inputs",
        type=_names,
        metavar="NAME,...",
        help="the file's input arrays besides source, in order, each a field (N, n, n) or a "
        "constant (N,) (default: the file's input_names, else none)",
    )
    p.add_argument(
        "--x-axis",
        type=int,
        choices=(0, 1),
        help="which array axis of the fields is x: 0 for [sample, x, y] (pdefm's), 1 for "
        "[sample, y, x] (meshgrid's default; transposed on import). Needed unless the file "
        "has x_axis or 2-D coordinate arrays x, y",
    )
    p.add_argument(
        "--boundary",
        metavar="SPEC",
        help="boundary condition: periodic, dirichlet or neumann on every side, or per axis / "
        "side, e.g. x=periodic,y=dirichlet or x_low=dirichlet,x_high=neumann,y=periodic "
        "(default: the file's boundary, else periodic)",
    )
    p.add_argument(
        "--val-fraction", type=float, default=0.1, help="share of samples for val (default 0.1)"
    )
    p.add_argument(
        "--test-fraction", type=float, default=0.1, help="share of samples for test (default 0.1)"
    )
    p.add_argument("--seed", type=int, default=0, help="seed of the split assignment (default 0)")
    p.add_argument(
        "--beta",
        type=float,
        help="PDEBench Darcy files only: the constant forcing beta of -div(a grad u) = beta "
        "(default: from the file name, e.g. 2D_DarcyFlow_beta1.0_Train.hdf5)",
    )
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(run=_run_import)


EXPORT_EPILOG = """\
the Well-style layout (HDF5, one split; N samples, n x n grid, x first):
  attrs              dataset_name, grid_type cartesian, n_spatial_dims 2, n_trajectories N,
                     simulation_parameters (a constant one is also an attribute), and pdefm's
                     roles: pdefm_inputs, pdefm_outputs, pdefm_family, pdefm_equation,
                     pdefm_parameter_name
  dimensions/x, y    (n,) the grid points
  boundary_conditions/NAME   bc_type PERIODIC, WALL (dirichlet) or OPEN (neumann) on the
                     sides of associated_dims that mask marks
  scalars/NAME       (N,) the constant inputs, and parameter (if the dataset has one)
  t0_fields/NAME     (N, n, n) float32: every input field and solution

example:
  pdefm export data/darcy --format well --out darcy-test.h5
  pdefm import darcy-test.h5 --out data/darcy-again      # the same inputs, grid and parameter
"""


def add_export(sub) -> None:
    p = sub.add_parser(
        "export",
        help="write one split of a dataset in a public layout (The Well-style HDF5)",
        description="Write one split of a pdefm dataset as a Well-style HDF5 file that other "
        "tools can read and `pdefm import` reads back.",
        epilog=EXPORT_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("dataset", help="dataset directory (holds card.json)")
    p.add_argument("--format", required=True, choices=("well",), help="the layout: well")
    p.add_argument("--out", required=True, help="the HDF5 file to write (replaced if it exists)")
    p.add_argument(
        "--split", default="test", choices=catalogue.SPLITS, help="which split (default test)"
    )
    p.set_defaults(run=_run_export)


def _run_export(args: argparse.Namespace) -> int:
    from pdefm.data.card import load_card
    from pdefm.data.interop import export_well

    card = load_card(args.dataset)
    out = export_well(args.dataset, args.out, split=args.split)
    print(
        f"exported {args.dataset} {args.split} ({card.count(args.split)} samples, "
        f"{card.resolution}x{card.resolution}; inputs {', '.join(card.input_channels)}) to "
        f"{out} in The Well's layout"
    )
    print(f"import it back with: pdefm import {out} --out DIR")
    return 0


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


def _names(text: str) -> list[str]:
    """A comma-separated list of names (empty entries dropped)."""
    return [name.strip() for name in text.split(",") if name.strip()]


def _run_import(args: argparse.Namespace) -> int:
    from pdefm.data.card import load_card
    from pdefm.data.importer import import_dataset

    out = import_dataset(
        args.file,
        args.out,
        family=args.family,
        equation=args.equation,
        val_fraction=args.val_fraction,
        test_fraction=args.test_fraction,
        seed=args.seed,
        progress=not args.quiet,
        inputs=args.inputs,
        x_axis=args.x_axis,
        boundary=args.boundary,
        beta=args.beta,
    )
    card = load_card(out)
    counts, n = card.counts, card.resolution
    print(
        f"dataset {out}: {card.family}, {counts['train']}/{counts['val']}/{counts['test']} "
        f"train/val/test at {n}x{n}; inputs {', '.join(card.input_channels)}; "
        f"output {', '.join(card.output_channels)}"
    )
    print(f"inspect it with: pdefm inspect {out}")
    print(f"fine-tune on it with: pdefm train {out} --init CHECKPOINT --n-train 64 --epochs 50")
    return 0
