"""GPU benchmark and end-to-end check of pdefm's training path, for one short call on a lent GPU.

Run it through ``benchmarks/gpu.sh`` (which checks the environment first); every part is
time-boxed so that the whole finishes inside ``--budget-s`` (default 330 s):

1. machine: GPU, torch, CUDA.
2. throughput: one training step (forward, MSE, backward, AdamW step) per preset at
   ``--resolution`` (128) and ``--batch`` (32), random inputs with 4 channels (as Poisson),
   in three precisions: fp32 (TF32 off), tf32 (pdefm's default on CUDA) and bf16 (autocast,
   the Fourier layers' DFTs in float32, TF32 on); plus the reference-style spectral layer
   (``pdefm.models.reference``, fp32) for the speed ratio. Samples/s over a timed loop of at
   least ``--seconds`` after 3 warm-up steps, ``torch.cuda.synchronize`` around the loop; peak
   memory is ``torch.cuda.max_memory_allocated`` over warm-up and loop (weights, AdamW state,
   gradients, activations). Output error: ||out - out_f64|| / ||out_f64|| of the forward pass
   against float64 on the same batch. Out-of-memory is caught and reported.
3. pre-training: a Poisson dataset (e in [1, 5]) generated on this machine's CPUs, then
   ``pdefm.train.loop.train`` of fno-1m in tf32, bf16 and fp32: the validation error per
   epoch and the final test error (the real loop: data cached on the GPU, no per-step sync).
4. torch.compile: the speed-up of ``torch.compile`` for one preset, in a subprocess with a
   timeout (compilation can be slow).

Everything lands in ``--out``: gpu_bench.json (all figures, rewritten after each part) and
gpu_bench.md (the BENCHMARKS.md section). Back on a CPU machine:
``python benchmarks/gpu_bench.py --from-json OUT/gpu_bench.json --write BENCHMARKS.md``.
``--smoke`` runs every part at toy sizes (on the CPU if there is no GPU) to check the script.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import gc
import json
import math
import os
import platform
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path

import torch
from _markdown import (  # the benchmarks' directory is on sys.path as a script
    git_commit,
    publish,
)

import pdefm
from pdefm.models import create_model, parameter_count
from pdefm.models.reference import use_reference_layers

PRESETS = ["fno-64k", "fno-1m", "fno-16m", "fno-67m", "fno-256m"]
MODES = ("fp32", "tf32", "bf16")
VARIANTS = [("fast", m) for m in MODES] + [("reference", "fp32")]
IN_CHANNELS = 4
PRETRAIN_MODES = {"tf32": {}, "bf16": {"bf16": True}, "fp32": {"tf32": False}}
SECTION = "## GPU training (benchmarks/gpu.sh)"
COMMAND = "OUT=DIR bash benchmarks/gpu.sh"
COMPILE_RESERVE = 60  # seconds kept for part 4 (it runs if at least 30 are left)


class Clock:
    """Seconds left of the budget."""

    def __init__(self, budget_s: float) -> None:
        self.end = time.monotonic() + budget_s

    def left(self) -> float:
        return self.end - time.monotonic()


# -- options ------------------------------------------------------------------------------------
def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", type=Path, default=Path("gpu-out"), help="directory for results")
    p.add_argument("--budget-s", type=float, default=330, help="wall-clock budget, seconds")
    p.add_argument("--presets", nargs="+", default=PRESETS)
    p.add_argument("--resolution", type=int, default=128)
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--seconds", type=float, default=1.0, help="timed loop length per figure")
    p.add_argument("--pretrain-n", type=int, default=4096, help="training samples, part 3")
    p.add_argument("--pretrain-s", type=float, default=25, help="seconds per pre-training run")
    p.add_argument("--compile-preset", default="fno-16m", help="preset of part 4")
    p.add_argument("--skip-compile", action="store_true")
    p.add_argument("--smoke", action="store_true", help="toy sizes; runs on the CPU too")
    p.add_argument("--from-json", type=Path, help="render a saved gpu_bench.json, run nothing")
    p.add_argument("--write", type=Path, help="markdown file to put the section in")
    p.add_argument("--compile-probe", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.smoke:
        args.presets, args.resolution, args.batch = ["fno-micro", "fno-64k"], 32, 4
        args.seconds, args.pretrain_n, args.pretrain_s = 0.1, 128, 5
        args.compile_preset = "fno-micro"
    return args


def pick_device(smoke: bool) -> torch.device:
    if torch.cuda.is_available():
        return torch.device("cuda")
    if smoke:
        return torch.device("cpu")
    raise SystemExit("gpu_bench: CUDA is not available here; run on a GPU (or use --smoke)")


# -- 1. machine ---------------------------------------------------------------------------------
def machine(device: torch.device) -> dict:
    info = {
        "device": str(device),
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "python": platform.python_version(),
        "cpus": os.cpu_count(),
        "pdefm": f"{pdefm.__version__} ({git_commit()})",
    }
    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        info.update(gpu=props.name, gpu_memory_gib=round(props.total_memory / 2**30, 1))
    return info


# -- 2. throughput ------------------------------------------------------------------------------
def set_precision(mode: str) -> None:
    """TF32 matmuls for tf32 and bf16 (bf16's float32 parts: the DFTs), not for fp32."""
    torch.backends.cuda.matmul.allow_tf32 = mode != "fp32"
    torch.backends.cudnn.allow_tf32 = mode != "fp32"


def autocast(device: torch.device, mode: str):
    if mode == "bf16" and device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def make_setup(preset: str, variant: str, args, device: torch.device):
    """Model (same weights for fast and reference), AdamW, random batch (B, 4, n, n)."""
    torch.manual_seed(0)
    with torch.device(device):  # initialised in place: a 256M model is slow to build on a CPU
        model = create_model(preset, IN_CHANNELS, 1)
        if variant == "reference":
            use_reference_layers(model)
    gen = torch.Generator().manual_seed(1)
    n = args.resolution
    x = torch.randn(args.batch, IN_CHANNELS, n, n, generator=gen).to(device)
    y = torch.randn(args.batch, 1, n, n, generator=gen).to(device)
    return model, torch.optim.AdamW(model.parameters(), lr=1e-4), x, y


def make_step(model, opt, x, y, device: torch.device, mode: str):
    def step() -> None:
        with autocast(device, mode):
            pred = model(x)
        loss = torch.nn.functional.mse_loss(pred.float(), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    return step


def time_steps(step, device: torch.device, seconds: float) -> tuple[int, float]:
    """(steps, seconds) of a synchronised loop lasting about ``seconds``, after 3 warm-ups."""
    for _ in range(3):
        step()
    sync(device)
    start = time.perf_counter()
    step()
    sync(device)
    steps = max(3, min(1000, math.ceil(seconds / max(time.perf_counter() - start, 1e-6))))
    start = time.perf_counter()
    for _ in range(steps):
        step()
    sync(device)
    return steps, time.perf_counter() - start


@torch.no_grad()
def output_error(model, x, device: torch.device, mode: str) -> float:
    """||out - out_f64|| / ||out_f64|| of one forward pass (the model ends up in float64;
    NaN if float64 does not fit in memory)."""
    model.eval()
    try:
        with autocast(device, mode):
            out = model(x).double()
        ref = model.double()(x.double())
    except torch.OutOfMemoryError:
        return math.nan
    return float((out - ref).norm() / ref.norm())


def measure(preset: str, variant: str, mode: str, args, device: torch.device) -> dict:
    """Samples/s, step time, peak memory and (fast layer) output error; OOM -> error."""
    row = {"preset": preset, "variant": variant, "mode": mode}
    setup = None
    try:
        set_precision(mode)
        setup = make_setup(preset, variant, args, device)
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)
        steps, seconds = time_steps(make_step(*setup, device, mode), device, args.seconds)
        row.update(samples_per_s=args.batch * steps / seconds, step_ms=1e3 * seconds / steps)
        if device.type == "cuda":
            row["peak_gib"] = torch.cuda.max_memory_allocated(device) / 2**30
        if variant == "fast":
            row["output_error"] = output_error(setup[0], setup[2], device, mode)
    except torch.OutOfMemoryError:
        row["error"] = "out of memory"
    finally:
        del setup
        gc.collect()  # the next figure starts from an empty GPU
        if device.type == "cuda":
            torch.cuda.empty_cache()
    set_precision("tf32")
    return row


def throughput(args, device: torch.device, clock: Clock, reserve: float, save) -> list[dict]:
    rows: list[dict] = []
    for preset in args.presets:
        for variant, mode in VARIANTS:
            if device.type == "cpu" and mode != "fp32":
                continue  # TF32 and bf16 autocast are CUDA features
            if clock.left() < reserve:
                rows.append({"preset": preset, "variant": variant, "mode": mode, "error": "time"})
                continue
            row = measure(preset, variant, mode, args, device)
            rows.append(row)
            print(f"  {preset:9s} {variant:9s} {mode}: {describe(row)}", flush=True)
            save()
    return rows


def describe(row: dict) -> str:
    if "error" in row:
        return row["error"]
    text = f"{row['samples_per_s']:,.1f} samples/s ({row['step_ms']:.2f} ms/step)"
    if "peak_gib" in row:
        text += f", peak {row['peak_gib']:.2f} GiB"
    if "output_error" in row:
        text += f", output error {row['output_error']:.1e}"
    return text


# -- 3. pre-training ----------------------------------------------------------------------------
def make_dataset(root: Path, args, n_eval: int) -> tuple[Path, float]:
    """A Poisson dataset (e in [1, 5]) generated here; returns (directory, seconds)."""
    from pdefm.data.generate import generate_dataset
    from pdefm.data.spec import GenerationSpec
    from pdefm.pdes import GaussianLatticeSource

    # the study's sources (sigma 1/32) need 64 points or more; toy grids get wider ones
    source = GaussianLatticeSource(sigma=1 / 32 if args.resolution >= 64 else 1 / 16)
    spec = GenerationSpec(
        "poisson", 1, 5, args.pretrain_n, n_eval, n_eval, args.resolution, source=source
    )
    start = time.perf_counter()
    generate_dataset(spec, root / "poisson-1-5", progress=False)
    return root / "poisson-1-5", time.perf_counter() - start


def pretrain_epochs(args, rows: list[dict]) -> int:
    """Epochs that fit ``--pretrain-s`` at the measured fno-1m tf32 rate (3 to 20)."""
    if args.smoke:
        return 2
    rate = next(
        (
            r["samples_per_s"]
            for r in rows
            if (r["preset"], r["variant"], r["mode"]) == ("fno-1m", "fast", "tf32")
            and "samples_per_s" in r
        ),
        1000.0,
    )
    return max(3, min(20, int(0.8 * args.pretrain_s * rate / args.pretrain_n)))


def pretrain_cost(args) -> float:
    """Seconds to keep for one pre-training run: its training plus reading the data onto the
    GPU, validation, checkpoints and the final evaluation."""
    return args.pretrain_s + 15


def pretrain_one(data: Path, out: Path, mode: str, epochs: int, device) -> dict:
    from pdefm.train.config import RunConfig
    from pdefm.train.loop import train

    config = RunConfig(
        data=str(data),
        model="fno-1m",
        lrs=(1e-3,),
        epochs=epochs,
        batch_size=32,
        device=str(device),
        out=str(out / mode),
        progress=False,
        **PRETRAIN_MODES[mode],
    )
    record = train(config)
    keep = ("status", "reason", "wall_time_s", "test", "val", "history", "device", "id")
    return {k: record.get(k) for k in keep}


def pretrain(args, device, clock: Clock, rows: list[dict], save) -> dict:
    """Part 3 (see module doc); runs are skipped when the budget runs short."""
    n_eval = 32 if args.smoke else 256
    result: dict = {"model": "fno-1m", "n_train": args.pretrain_n, "n_eval": n_eval, "runs": {}}
    with tempfile.TemporaryDirectory(prefix="pdefm-gpu-") as tmp:
        data, result["generate_s"] = make_dataset(Path(tmp), args, n_eval)
        print(f"  generated {args.pretrain_n} training samples in {result['generate_s']:.1f} s")
        result["epochs"] = epochs = pretrain_epochs(args, rows)
        for mode in PRETRAIN_MODES:
            if clock.left() < pretrain_cost(args):
                result["runs"][mode] = {"status": "skipped (time)"}
                continue
            crash = {"status": "crashed", "wall_time_s": math.inf}
            run = guarded(pretrain_one, crash, data, Path(tmp) / "runs", mode, epochs, device)
            run["samples_per_s"] = args.pretrain_n * epochs / max(run["wall_time_s"], 1e-9)
            result["runs"][mode] = run
            print(f"  {mode}: {describe_run(run)}", flush=True)
            save()
    return result


def describe_run(run: dict) -> str:
    if run.get("status") != "completed":
        return str(run.get("reason") or run.get("status"))
    curve = " ".join(f"{h['val_rel_l2']:.3f}" for h in run["history"])
    return (
        f"val {curve}; test {run['test']['rel_l2']:.4f}; {run['wall_time_s']:.1f} s "
        f"({run['samples_per_s']:,.0f} samples/s incl. validation)"
    )


# -- 4. torch.compile ---------------------------------------------------------------------------
def compile_probe(args, device: torch.device) -> dict:
    """In this process: eager vs compiled samples/s of one preset (tf32), compile time."""
    set_precision("tf32")
    model, opt, x, y = make_setup(args.compile_preset, "fast", args, device)
    eager = time_steps(make_step(model, opt, x, y, device, "tf32"), device, args.seconds)
    compiled = torch.compile(model)
    step = make_step(compiled, opt, x, y, device, "tf32")
    start = time.perf_counter()
    step()
    sync(device)
    first = time.perf_counter() - start
    fast = time_steps(step, device, args.seconds)
    return {
        "preset": args.compile_preset,
        "eager_samples_per_s": args.batch * eager[0] / eager[1],
        "compiled_samples_per_s": args.batch * fast[0] / fast[1],
        "first_step_s": first,
    }


def run_compile_probe(args, clock: Clock) -> dict:
    limit = min(150.0, clock.left() - 10)
    if args.skip_compile or limit < 30:
        return {"preset": args.compile_preset, "error": "skipped"}
    cmd = [sys.executable, __file__, "--compile-probe", "--compile-preset", args.compile_preset]
    cmd += ["--resolution", str(args.resolution), "--batch", str(args.batch)]
    cmd += ["--seconds", str(args.seconds)] + (["--smoke"] if args.smoke else [])
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=limit)
    except subprocess.TimeoutExpired:
        return {"preset": args.compile_preset, "error": f"no result within {limit:.0f} s"}
    if done.returncode != 0:
        tail = (done.stderr.strip().splitlines() or ["?"])[-1][:200]
        return {"preset": args.compile_preset, "error": f"failed: {tail}"}
    return json.loads(done.stdout.strip().splitlines()[-1])


# -- report -------------------------------------------------------------------------------------
def cell(rows: list[dict], preset: str, variant: str, mode: str, key: str, fmt: str) -> str:
    for r in rows:
        if (r["preset"], r["variant"], r["mode"]) == (preset, variant, mode):
            if key in r:
                return format(r[key], fmt)
            return "" if "error" not in r or key != "samples_per_s" else r["error"]
    return ""


def throughput_table(rows: list[dict], presets: list[str]) -> str:
    lines = [
        "| preset | params | fp32 samples/s | tf32 samples/s | bf16 samples/s | reference fp32 "
        "samples/s | fast/reference (fp32) | peak GiB fp32 | peak GiB bf16 | output error tf32 "
        "| output error bf16 |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for p in presets:
        rate = {v + m: cell(rows, p, v, m, "samples_per_s", ",.1f") for v, m in VARIANTS}
        fast = _value(rows, p, "fast", "fp32")
        ref = _value(rows, p, "reference", "fp32")
        ratio = f"{fast / ref:.2f}x" if fast and ref else ""
        lines.append(
            f"| {p} | {parameter_count(p, IN_CHANNELS, 1):,} | {rate['fastfp32']} | "
            f"{rate['fasttf32']} | {rate['fastbf16']} | {rate['referencefp32']} | {ratio} | "
            f"{cell(rows, p, 'fast', 'fp32', 'peak_gib', '.2f')} | "
            f"{cell(rows, p, 'fast', 'bf16', 'peak_gib', '.2f')} | "
            f"{cell(rows, p, 'fast', 'tf32', 'output_error', '.1e')} | "
            f"{cell(rows, p, 'fast', 'bf16', 'output_error', '.1e')} |"
        )
    return "\n".join(lines)


def _value(rows: list[dict], preset: str, variant: str, mode: str) -> float | None:
    for r in rows:
        if (r["preset"], r["variant"], r["mode"]) == (preset, variant, mode):
            return r.get("samples_per_s")
    return None


def pretrain_table(result: dict) -> str:
    runs = {m: r for m, r in result.get("runs", {}).items() if r.get("status") == "completed"}
    if not runs:
        return "(no pre-training run finished)"
    lines = ["| epoch | " + " | ".join(f"val rel L2 {m}" for m in runs) + " |"]
    lines.append("|---:|" + "---:|" * len(runs))
    for i in range(max(len(r["history"]) for r in runs.values())):
        vals = [
            r["history"][i]["val_rel_l2"] if i < len(r["history"]) else None for r in runs.values()
        ]
        lines.append(
            f"| {i + 1} | " + " | ".join("" if v is None else f"{v:.4f}" for v in vals) + " |"
        )
    lines.append(
        "| test | " + " | ".join(f"**{r['test']['rel_l2']:.4f}**" for r in runs.values()) + " |"
    )
    lines.append(
        "| samples/s | " + " | ".join(f"{r['samples_per_s']:,.0f}" for r in runs.values()) + " |"
    )
    return "\n".join(lines)


def compile_note(result: dict) -> str:
    if "error" in result:
        return f"torch.compile ({result.get('preset')}): {result['error']}."
    return (
        f"torch.compile ({result['preset']}, tf32, `pdefm train --compile`): "
        f"{result['compiled_samples_per_s']:,.1f} samples/s against "
        f"{result['eager_samples_per_s']:,.1f} eager "
        f"({result['compiled_samples_per_s'] / result['eager_samples_per_s']:.2f}x); the first "
        f"compiled step took {result['first_step_s']:.1f} s."
    )


def notes(results: dict) -> list[str]:
    a, pre = results["args"], results.get("pretrain", {})
    out = [
        f"One training step = forward + MSE + backward + AdamW step, batch {a['batch']}, "
        f"{a['resolution']}x{a['resolution']}, {IN_CHANNELS} input channels, random data; "
        f"samples/s over a synchronised loop of at least {a['seconds']} s after 3 warm-up "
        "steps; peak GiB = `torch.cuda.max_memory_allocated` over warm-up and loop.",
        "fp32 = TF32 off; tf32 = TF32 matmuls (pdefm's default on CUDA, `--no-tf32` turns it "
        "off); bf16 = autocast to bfloat16 (`--bf16`) with the Fourier layers' DFTs in float32 "
        "(TF32 on). reference = the same FNO with the public reference spectral layer.",
        "output error = ||out - out_f64|| / ||out_f64|| of one forward pass of the initial "
        "model against float64 on the same batch.",
    ]
    if pre.get("runs"):
        out.append(
            f"Pre-training: `pdefm.train.loop.train`, fno-1m, Poisson e in [1, 5], "
            f"{pre['n_train']} training / {pre['n_eval']} val / {pre['n_eval']} test samples "
            "generated on the machine "
            f"in {pre.get('generate_s', 0):.1f} s, batch 32, lr 1e-3 (AdamW, cosine), "
            f"{pre.get('epochs')} epochs; samples/s = training samples x epochs / wall time "
            "(validation included)."
        )
    if "compile" in results:
        out.append(compile_note(results["compile"]))
    return out


def machine_line(m: dict) -> str:
    gpu = f"{m.get('gpu', m['device'])} ({m.get('gpu_memory_gib', '?')} GiB)"
    return (
        f"{gpu}, {m['cpus']} CPUs, torch {m['torch']} (CUDA {m['cuda']}), Python "
        f"{m['python']}, pdefm {m['pdefm']}"
    )


def render(results: dict) -> str:
    """The BENCHMARKS.md section of a results dict."""
    parts = [SECTION, "", throughput_table(results["throughput"], results["args"]["presets"])]
    parts += ["", "Pre-training (validation relative L2 per epoch, test at the end):", ""]
    parts += [pretrain_table(results.get("pretrain", {})), ""]
    parts += [f"- {n}" for n in notes(results)]
    parts += [
        "",
        f"Command: `{COMMAND}` ({results.get('elapsed_s', 0):.0f} s)  ",
        f"Machine: {machine_line(results['machine'])}  ",
        f"Date: {results['started']}",
        "",
    ]
    return "\n".join(parts)


# -- main ---------------------------------------------------------------------------------------
def run_all(args, device: torch.device) -> dict:
    clock, started = Clock(args.budget_s), time.monotonic()
    args.out.mkdir(parents=True, exist_ok=True)
    results: dict = {
        "started": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "args": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
        "machine": machine(device),
    }

    def save() -> None:
        results["elapsed_s"] = time.monotonic() - started
        (args.out / "gpu_bench.json").write_text(json.dumps(results, indent=1) + "\n")

    print(json.dumps(results["machine"]), flush=True)
    reserve = 3 * pretrain_cost(args) + 15 + COMPILE_RESERVE  # parts 3 and 4 go after
    print("throughput:", flush=True)
    results["throughput"] = guarded(throughput, [], args, device, clock, reserve, save)
    print("pre-training:", flush=True)
    results["pretrain"] = guarded(pretrain, {}, args, device, clock, results["throughput"], save)
    print("torch.compile:", flush=True)
    results["compile"] = guarded(run_compile_probe, {"error": "crashed"}, args, clock)
    print("  " + compile_note(results["compile"]), flush=True)
    save()
    return results


def guarded(part, fallback, *args):
    """``part(*args)``; a crash is printed and the next part still runs (one call, one try)."""
    try:
        return part(*args)
    except Exception:  # noqa: BLE001 - report and go on: the GPU time is already paid for
        traceback.print_exc()
        return fallback


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.smoke and not torch.cuda.is_available():
        torch.set_num_threads(1)  # toy CPU ops: more threads only contend on a shared machine
    if args.from_json is not None:
        results = json.loads(args.from_json.read_text())
    elif args.compile_probe:
        print(json.dumps(compile_probe(args, pick_device(args.smoke))))
        return 0
    else:
        results = run_all(args, pick_device(args.smoke))
        (args.out / "gpu_bench.md").write_text(render(results))
    section = render(results)
    publish(section, args.write)
    return 0


if __name__ == "__main__":
    sys.exit(main())
