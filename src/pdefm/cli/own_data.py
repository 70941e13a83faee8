"""`pdefm import` and `pdefm export`: your own arrays in, a dataset out as a public layout."""

from __future__ import annotations

import argparse

from pdefm import catalogue

IMPORT_EPILOG = """\
the file (NPZ, HDF5 top-level datasets, or a torch.save'd dict of tensors) with these names:
  source             (N, n, n) or (N, 1, n, n)  the forcing field f; (N,) for a constant one
  solution           (N, n, n) or (N, 1, n, n)  the target field u; several outputs: one array
                              each, listed with --outputs (or the file's output_names)
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
        "--outputs",
        type=_names,
        metavar="NAME,...",
        help="the file's output fields (N, n, n), in order; a model predicts them all "
        "(default: the file's output_names, else solution)",
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
    from pdefm.data.export import export_well

    card = load_card(args.dataset)
    out = export_well(args.dataset, args.out, split=args.split)
    print(
        f"exported {args.dataset} {args.split} ({card.count(args.split)} samples, "
        f"{card.resolution}x{card.resolution}; inputs {', '.join(card.input_channels)}) to "
        f"{out} in The Well's layout"
    )
    print(f"import it back with: pdefm import {out} --out DIR")
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
        outputs=args.outputs,
        x_axis=args.x_axis,
        boundary=args.boundary,
        beta=args.beta,
    )
    card = load_card(out)
    counts, n = card.counts, card.resolution
    print(
        f"dataset {out}: {card.family}, {counts['train']}/{counts['val']}/{counts['test']} "
        f"train/val/test at {n}x{n}; inputs {', '.join(card.input_channels)}; "
        f"outputs {', '.join(card.output_channels)}"
    )
    print(f"inspect it with: pdefm inspect {out}")
    print(f"fine-tune on it with: pdefm train {out} --init CHECKPOINT --n-train 64 --epochs 50")
    return 0
