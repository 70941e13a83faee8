"""Figures for people: names in words, legends explaining the band, plain ticks, validation
curves and test-sample panels (synthetic rows), and predictions of a tiny trained study."""

from __future__ import annotations

import json
import math
import shutil
import xml.etree.ElementTree as ET
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from pdefm.errors import PdefmError
from pdefm.report import figures
from pdefm.report.figure_kit import curve_labels
from pdefm.report.names import (
    method_label,
    plain_number,
    row_task_title,
    task_title,
)
from pdefm.report.samples import pick_runs
from pdefm.report.table import CurveKey, build_curves, by_task, curve_key
from pdefm.study.row import COLUMNS, ResultRow

PNG = b"\x89PNG\r\n\x1a\n"
SIZES = (8, 32, 128, 512)


def row(method: str, n: int, err: float, seed: int = 0, **kw) -> ResultRow:
    """A completed downstream row of task poisson_5-10; every results column present."""
    init = kw.pop("init", "scratch" if method == "scratch" else "poisson_1-5")
    pre = (None, None) if method == "scratch" else kw.pop("pretrain", (1.0, 5.0))
    base = {k: None for k in COLUMNS}
    base.update(
        run_id=f"{method}-{init}-{n}-{seed}", kind="downstream", status="completed",
        task="poisson_5-10", family="poisson", parameter="e", task_low=5.0, task_high=10.0,
        method=method, init=init, init_family="none" if method == "scratch" else "poisson",
        mode="zero-shot" if method == "zero-shot" else "full", model="fno-tiny", params=70000,
        seed=seed, n_train=n, lr=1e-3, val_rel_l2=err, test_rel_l2=err,
        pretrain_low=pre[0], pretrain_high=pre[1],
    )  # fmt: skip
    base.update(kw)
    return ResultRow.from_json(base)


def study_rows(seeds=(0, 1)) -> list[ResultRow]:
    """Scratch and fine-tune at SIZES plus zero-shot, errors about 0.02 to 0.5."""
    rows = []
    for s in seeds:
        for n in SIZES:
            rows.append(row("scratch", n, 0.5 * (n / 8) ** -0.4 * (1 + 0.1 * s), s))
            rows.append(row("finetune", n, 0.2 * (n / 8) ** -0.4 * (1 + 0.1 * s), s))
        rows.append(row("zero-shot", 0, 0.6 * (1 + 0.1 * s), s))
    return rows


# -- names ---------------------------------------------------------------------------------
def test_plain_numbers_and_task_titles():
    assert [plain_number(x) for x in (5, 5.0, 0.2, 1e-3, 1200.0, 0.1 + 0.2)] == [
        "5", "5", "0.2", "0.001", "1200", "0.3",
    ]  # fmt: skip
    assert task_title("poisson", "e", 5, 10) == "Poisson, e in [5, 10]"
    assert task_title("advection_diffusion", "psi", 0.2, 1e-3) == (
        "Advection-diffusion, psi in [0.2, 0.001]"
    )
    assert task_title("mixture", "mixed", None, None) == "Mixture"
    assert task_title("helmholtz", "w", None, 3.0) == "Helmholtz"
    assert task_title("helmholtz", "w", math.nan, 3.0) == "Helmholtz"
    assert row_task_title(row("scratch", 8, 0.1)) == "Poisson, e in [5, 10]"
    # another task has the same family and range (other boundary or forcing): named too
    shared = row("scratch", 8, 0.1, shared_range=True)
    assert row_task_title(shared) == "Poisson, e in [5, 10], task poisson_5-10"


def test_method_labels_in_words():
    def label(r):
        return method_label(curve_key(r), r)

    assert label(row("scratch", 8, 0.1)) == "trained from scratch (fno-tiny)"
    assert label(row("finetune", 8, 0.1)) == "fine-tuned from Poisson, e in [1, 5] (fno-tiny)"
    lora = row("finetune", 8, 0.1, mode="lora")
    assert label(lora) == "fine-tuned from Poisson, e in [1, 5] (fno-tiny) · mode lora"
    zs = row("zero-shot", 0, 0.5)
    assert label(zs) == "zero-shot: pre-trained on Poisson, e in [1, 5] (fno-tiny)"
    mixed = row("finetune", 8, 0.1, init="pre_mix", init_family="mixture", pretrain=(None, None))
    assert label(mixed) == "fine-tuned from the mixed pre-training (stage pre_mix) (fno-tiny)"
    other = row("finetune", 8, 0.1, init_family="helmholtz", pretrain=(1.0, 10.0))
    assert label(other) == "fine-tuned from Helmholtz, w in [1, 10] (fno-tiny)"
    key = CurveKey("t", "finetune", "stage_a", "full", "fno-tiny")
    assert method_label(key, None, with_model=False) == "fine-tuned from stage stage_a"


# -- error vs N ----------------------------------------------------------------------------
def legend_texts(fig) -> list[str]:
    return [t.get_text() for leg in fig.legends for t in leg.get_texts()]


def test_error_vs_n_titles_legend_and_plain_ticks(tmp_path):
    tasks = by_task(build_curves(study_rows()))
    fig = figures._error_vs_n_figure(tasks)
    (ax,) = fig.axes
    assert ax.get_title() == "Poisson, e in [5, 10]"
    assert set(legend_texts(fig)) == {
        "trained from scratch (fno-tiny)",
        "fine-tuned from Poisson, e in [1, 5] (fno-tiny)",
        "zero-shot: pre-trained on Poisson, e in [1, 5] (fno-tiny)",
        "fit",
    }
    assert fig.legends[0].get_title().get_text() == (
        "line: mean over 2 seeds; band: min to max over seeds"
    )
    fig.canvas.draw()  # tick labels are filled in at draw time
    assert list(ax.get_xticks()) == list(SIZES)
    assert [t.get_text() for t in ax.get_xticklabels()] == ["8", "32", "128", "512"]
    assert not any(t.get_text() for t in ax.get_xticklabels(minor=True))
    ys = [t.get_text() for t in ax.get_yticklabels()]
    assert ys and all("10^" not in y and "e" not in y for y in ys)
    for text, value in zip(ys, ax.get_yticks(), strict=True):
        assert float(text) == pytest.approx(value)
    assert "0.1" in ys
    path = figures.error_vs_n(tasks, tmp_path / "e.png")
    assert path.read_bytes()[:8] == PNG
    assert "2 seeds" in figures.error_vs_n_caption(tasks)


def test_one_seed_says_no_band():
    tasks = by_task(build_curves(study_rows(seeds=(0,))))
    fig = figures._error_vs_n_figure(tasks)
    assert "no band" in fig.legends[0].get_title().get_text()
    uneven = by_task(build_curves(study_rows() + [row("scratch", 1024, 0.05, 0)]))
    note = figures.seeds_note(uneven["poisson_5-10"])
    assert note.startswith("line: mean over 1 to 2 seeds") and "one seed: no band" in note


def two_tasks(rows: list[ResultRow]) -> list[ResultRow]:
    """``rows`` plus scratch runs of a second task (e in [10, 20]) with larger errors."""
    other = [row("scratch", n, 0.9 * (n / 8) ** -0.3, seed=s, task="poisson_10-20",
                 task_low=10.0, task_high=20.0, run_id=f"other-{n}-{s}")
             for n in SIZES for s in (0, 1)]  # fmt: skip
    return rows + other


def test_error_vs_n_draws_each_fit_over_its_runs():
    tasks = by_task(build_curves(study_rows()))
    fig = figures._error_vs_n_figure(tasks)
    (ax,) = fig.axes
    fits = [line for line in ax.get_lines() if line.get_gid() == "fit"]
    means = {line.get_label(): line for line in ax.get_lines() if line.get_label()[0] != "_"}
    assert len(fits) == 2  # scratch and fine-tune; zero-shot has no N to scale with
    for fit in fits:
        n = fit.get_xdata()
        assert (n[0], n[-1]) == pytest.approx((min(SIZES), max(SIZES)))
        assert fit.get_linewidth() < next(iter(means.values())).get_linewidth()
    # each fit in its method's colour, close to its own mean points (a pure power law)
    colours = {m.get_color() for m in means.values()}
    assert {f.get_color() for f in fits} <= colours
    scratch = means["trained from scratch (fno-tiny)"]
    (fit,) = [f for f in fits if f.get_color() == scratch.get_color()]
    at_ends = np.interp(np.log([8, 512]), np.log(fit.get_xdata()), fit.get_ydata())
    ends = scratch.get_ydata()[[0, -1]]
    assert at_ends == pytest.approx(ends, rel=0.05)
    # fits given by the caller are drawn as given
    from pdefm.report.fits import PowerLawFit

    key = next(c.key for c in tasks["poisson_5-10"] if c.key.method == "scratch")
    given = figures._error_vs_n_figure(tasks, fits={key: PowerLawFit(1.0, 0.5, 0.0)})
    (line,) = [f for f in given.axes[0].get_lines() if f.get_gid() == "fit"]
    assert line.get_ydata()[0] == pytest.approx(8**-0.5)  # a N^-b + c at N = 8


def hollow_artists(fig) -> list:
    return [line for ax in fig.axes for line in ax.get_lines() if line.get_gid() == "hollow"]


def test_budget_limited_points_are_hollow():
    plain = figures._error_vs_n_figure(by_task(build_curves(study_rows())))
    assert hollow_artists(plain) == []
    assert "budget-limited (still improving)" not in legend_texts(plain)
    rows = [
        replace(r, converged=False) if (r.method, r.n_train, r.seed) == ("scratch", 128, 1)
        else replace(r, converged=True) if r.method != "zero-shot" else r
        for r in study_rows()
    ]  # fmt: skip
    tasks = by_task(build_curves(rows))
    fig = figures._error_vs_n_figure(tasks)
    (marks,) = hollow_artists(fig)
    assert list(marks.get_xdata()) == [128]  # one of two seeds at N = 128 is enough
    assert marks.get_markerfacecolor() == "none" and marks.get_marker() == "o"
    scratch = next(line for line in fig.axes[0].get_lines()
                   if line.get_label() == "trained from scratch (fno-tiny)")  # fmt: skip
    assert marks.get_markeredgecolor() == scratch.get_color()
    assert scratch.get_markevery() == [0, 1, 3]  # no filled marker under the hollow one
    assert "budget-limited (still improving)" in legend_texts(fig)
    assert "Hollow markers: a run at that N was budget-limited" in figures.error_vs_n_caption(tasks)
    # a later check may mark (curve key, N) points unsettled: drawn the same way
    key = next(c.key for c in tasks["poisson_5-10"] if c.key.method == "finetune")
    fig = figures._error_vs_n_figure(tasks, unsettled={(key, 32)})
    assert sorted(float(m.get_xdata()[0]) for m in hollow_artists(fig)) == [32, 128]
    assert {"unsettled", "budget-limited (still improving)"} <= set(legend_texts(fig))


def test_comparing_panels_share_axes_and_text_is_slide_size():
    fig = figures._error_vs_n_figure(by_task(build_curves(two_tasks(study_rows()))))
    a, b = fig.axes
    assert a.get_shared_y_axes().joined(a, b) and a.get_shared_x_axes().joined(a, b)
    assert a.get_ylim() == b.get_ylim() and a.get_xlim() == b.get_xlim()
    fig.draw_without_rendering()  # runs the layout (a bare Figure's canvas draws nothing)
    texts = [t for ax in fig.axes for t in ax.get_xticklabels() + ax.get_yticklabels()]
    texts += [ax.xaxis.label for ax in fig.axes] + [a.yaxis.label, a.title, b.title]
    texts += [t for leg in fig.legends for t in [*leg.get_texts(), leg.get_title()]]
    assert texts and min(t.get_fontsize() for t in texts if t.get_text()) >= 11
    # the legend sits outside the panels, below them
    legend = fig.legends[0].get_window_extent()
    assert legend.y1 <= min(ax.get_window_extent().y0 for ax in fig.axes)
    hist = {"curves": build_curves(study_rows())}
    runs = {r.run_id: history(r.n_train, r.seed) for r in study_rows() if r.n_train}
    val = figures.validation_figure(hist["curves"], runs)
    first, second = val.axes
    assert first.get_shared_y_axes().joined(first, second)


@pytest.mark.parametrize(
    ("lo", "hi", "expected"),
    [(0.0123, 0.5, [0.01, 0.03, 0.1, 0.3]), (0.07, 0.195, [0.1, 0.2]), (1.0, 4.6, [1, 2, 5])],
)
def test_log_ticks_are_round_and_spread(lo, hi, expected):
    assert figures.log_ticks(lo, hi) == expected


def test_other_figures_still_draw(tmp_path):
    from pdefm.report.analysis import savings_by_curve

    rows = study_rows() + [row("scratch", n, 0.3 * (n / 8) ** -0.4, model="fno-micro",
                               params=9000, run_id=f"m{n}") for n in SIZES]  # fmt: skip
    curves = build_curves(rows)
    tasks = by_task(curves)
    fig = figures._model_size_figure(tasks)
    fig.canvas.draw()
    titles = [ax.get_title() for ax in fig.axes if ax.get_visible()]
    assert "Poisson, e in [5, 10], N = 8" in titles
    assert "Poisson, e in [5, 10], zero-shot (N = 0)" in titles
    assert [t.get_text() for t in fig.axes[1].get_xticklabels()] == ["9k", "70k"]
    assert figures.savings_figure(savings_by_curve(curves), tmp_path / "s.png").stat().st_size
    assert figures.model_size(tasks, tmp_path / "m.png").read_bytes()[:8] == PNG


def test_model_size_joins_one_stage_per_model_into_one_line():
    """A size ladder pre-trains one stage per model on the same data: the figure draws one
    fine-tuned line through the models, not one line per stage; two stages of the *same*
    model on the same data still get their stage names."""
    rows = []
    for model, params, stage in (("fno-micro", 9000, "pre_m"), ("fno-tiny", 70000, "pre_t")):
        for method in ("scratch", "finetune"):
            init = "scratch" if method == "scratch" else stage
            rows.append(row(method, 8, 0.2, model=model, params=params, init=init,
                            run_id=f"{method}-{model}"))  # fmt: skip
    fig = figures._model_size_figure(by_task(build_curves(rows)))
    assert sorted(legend_texts(fig)) == [
        "fine-tuned from Poisson, e in [1, 5]", "trained from scratch",
    ]  # fmt: skip
    (ax,) = [a for a in fig.axes if a.get_visible()]
    assert sorted(len(line.get_xdata()) for line in ax.get_lines()) == [2, 2]
    twin = row("finetune", 8, 0.1, model="fno-tiny", params=70000, init="pre_t2", run_id="t2")
    labels = curve_labels(build_curves(rows + [twin]).values(), with_model=False)
    assert sorted(set(labels.values())) == [
        "fine-tuned from Poisson, e in [1, 5] [stage pre_m]",
        "fine-tuned from Poisson, e in [1, 5] [stage pre_t2]",
        "fine-tuned from Poisson, e in [1, 5] [stage pre_t]",
        "trained from scratch",
    ]


# -- validation curves ---------------------------------------------------------------------
def history(n: int, seed: int, steps: int = 6) -> list[dict]:
    """A decaying validation history of ``steps`` validations every ``n`` steps."""
    return [
        {"epoch": e, "step": e * n, "val_rel_l2": 0.5 * (e + 1) ** -0.5 * (1 + 0.05 * seed)}
        for e in range(1, steps + 1)
    ]


def test_validation_curves_skip_runs_without_history(tmp_path):
    rows = study_rows()
    curves = build_curves(rows)
    hist = {r.run_id: history(r.n_train, r.seed) for r in rows if r.method == "finetune"}
    hist["scratch-scratch-8-0"] = []  # recorded, but empty: skipped like a missing one
    fig = figures.validation_figure(curves, hist)
    (ax,) = fig.axes  # only the fine-tune curve has histories
    assert (
        ax.get_title() == "Poisson, e in [5, 10]\nfine-tuned from Poisson, e in [1, 5] (fno-tiny)"
    )
    assert legend_texts(fig) == [f"N = {n}" for n in SIZES]
    # per N: 2 seeds as thin lines, their best points and the thick mean
    assert len(ax.get_lines()) == len(SIZES) * (2 + 2 + 1)
    assert figures.has_histories(curves, hist)
    assert not figures.has_histories(curves, {"scratch-scratch-8-0": []})
    titled = figures.validation_figure(curves, hist, titles={"poisson_5-10": "my task"})
    assert titled.axes[0].get_title().startswith("my task\n")
    path = figures.validation_curves(list(curves.values()), hist, tmp_path / "v.png")
    assert path.read_bytes()[:8] == PNG
    empty = figures.validation_curves(curves, {}, tmp_path / "none.png")
    assert empty.read_bytes()[:8] == PNG


# -- test samples ----------------------------------------------------------------------------
def sample_dict(s: int = 3, n: int = 8, methods=("fine-tuned, N=8", "scratch, N=8")) -> dict:
    rng = np.random.default_rng(0)
    truth = rng.standard_normal((s, n, n))
    preds = {m: truth + 0.1 * (i + 1) * rng.standard_normal((s, n, n)) for i, m in
             enumerate(methods)}  # fmt: skip
    return {"title": "Poisson, e in [5, 10]", "inputs": rng.standard_normal((s, n, n)),
            "truth": truth, "predictions": preds}  # fmt: skip


def test_samples_panel_layout_and_scales(tmp_path):
    samples = sample_dict()
    fig = figures.samples_figure(samples)
    images = [ax for ax in fig.axes if ax.get_images()]
    assert len(images) == 3 * (2 + 2 * 2)  # rows x (input, truth, 2 predictions, 2 errors)
    top = [ax.get_title() for ax in images[:6]]
    assert top == [
        "input: source field", "true solution", "fine-tuned, N=8: prediction",
        "scratch, N=8: prediction", "fine-tuned, N=8: |error|", "scratch, N=8: |error|",
    ]  # fmt: skip
    truth_clim = images[1].get_images()[0].get_clim()
    assert images[2].get_images()[0].get_clim() == truth_clim  # prediction on the truth's scale
    err_clim = images[4].get_images()[0].get_clim()
    assert err_clim[0] == 0 and images[5].get_images()[0].get_clim() == err_clim
    assert len(fig.axes) == len(images) + 3 * 3  # three colourbars per row
    assert fig.get_suptitle() == "Poisson, e in [5, 10]"
    assert figures.samples_panel(samples, tmp_path / "s.png").read_bytes()[:8] == PNG


def test_samples_panel_shapes():
    one = sample_dict(s=1)
    one = {**one, "inputs": one["inputs"][0], "truth": one["truth"][:, None]}  # (n, n), (S,1,n,n)
    inputs, truth, preds = figures.sample_arrays(one)
    assert inputs.shape == truth.shape == (1, 8, 8)
    many = figures.sample_arrays(sample_dict(s=6))
    assert many[1].shape == (figures.MAX_SAMPLES, 8, 8)
    bad = sample_dict()
    bad["predictions"]["scratch, N=8"] = bad["truth"][:, :4]
    with pytest.raises(PdefmError, match="scratch, N=8.*same test samples"):
        figures.sample_arrays(bad)
    with pytest.raises(PdefmError, match="no predictions"):
        figures.samples_figure({**sample_dict(), "predictions": {}})


def test_pick_runs_prefers_lowest_validation_then_lowest_seed():
    rows = study_rows()
    rows += [row("finetune", n, 0.01, init="other", val_rel_l2=0.9, run_id=f"o{n}") for n in SIZES]
    picks = pick_runs(rows, "poisson_5-10")
    assert list(picks) == ["fine-tuned, N=8", "scratch, N=8", "zero-shot"]
    assert picks["fine-tuned, N=8"].run_id == "finetune-poisson_1-5-8-0"  # not on test
    assert picks["zero-shot"].init == "poisson_1-5"
    assert pick_runs(rows, "another_task") == {}


# -- a tiny trained study --------------------------------------------------------------------
def tiny_study(root: Path) -> list[ResultRow]:
    """A study folder laid out as ``pdefm study run`` writes one (root/data/down, root/runs/ID
    with record.json and checkpoint/), trained for a few steps on 16 x 16 grids, and its
    results rows: scratch and fine-tune at N = 4, and a zero-shot run of the fine-tune's init
    (the scratch model stands in for a pre-trained stage)."""
    from pdefm.data.generate import generate_dataset
    from pdefm.data.spec import GenerationSpec
    from pdefm.pdes.sources import GaussianLatticeSource
    from pdefm.train.config import RunConfig
    from pdefm.train.loop import train

    source = GaussianLatticeSource(sigma=0.125)  # wide enough for a 16 x 16 grid
    spec = GenerationSpec("poisson", 5.0, 10.0, 8, 4, 4, resolution=16, block_size=8,
                          source=source)  # fmt: skip
    data = root / "data" / "down"
    generate_dataset(spec, data, progress=False, drop_unsampleable=True)
    common = dict(data=str(data), model="fno-micro", lrs=(3e-3,), epochs=None, steps=3,
                  out=str(root / "runs"), progress=False, device="cpu")  # fmt: skip
    train(RunConfig(**common, n_train=4, run_name="sc4"))
    init = str(root / "runs" / "sc4" / "checkpoint")
    train(RunConfig(**common, n_train=4, init=init, run_name="ft4"))
    train(RunConfig(**common, init=init, mode="zero-shot", run_name="zs"))
    stage = dict(init="p", pretrain=(5.0, 10.0), task="down", model="fno-micro")
    return [
        row("scratch", 4, 0.9, run_id="sc4", task="down", model="fno-micro"),
        row("finetune", 4, 0.8, run_id="ft4", **stage),
        row("zero-shot", 0, 1.0, run_id="zs", **stage),
    ]


def test_predict_samples_on_a_tiny_study(tmp_path):
    from pdefm.report.samples import predict_samples, read_histories

    root = tmp_path / "tiny"
    rows = tiny_study(root)
    samples = predict_samples(root, rows, "down", n_samples=2)
    assert samples is not None and samples["title"].startswith("Poisson, e in [5, 10]")
    assert list(samples["predictions"]) == ["fine-tuned, N=4", "scratch, N=4", "zero-shot"]
    assert samples["truth"].shape == samples["inputs"].shape == (2, 16, 16)
    for pred in samples["predictions"].values():
        assert pred.shape == (2, 16, 16) and np.isfinite(pred).all()
    # the zero-shot run evaluated its init: the same weights as the scratch model
    assert np.allclose(samples["predictions"]["zero-shot"], samples["predictions"]["scratch, N=4"])
    assert figures.samples_panel(samples, tmp_path / "s.png").read_bytes()[:8] == PNG
    assert "fine-tuned from Poisson, e in [5, 10]" in figures.samples_caption(samples)
    histories = read_histories(root, rows)
    assert set(histories) == {"sc4", "ft4"}  # a zero-shot run has no history
    assert [h["step"] for h in histories["ft4"]][-1] == 3
    assert len(figures.validation_figure(build_curves(rows), histories).axes) == 2
    # a study folder moved since: the zero-shot init is found under root/runs again
    record_path = root / "runs" / "zs" / "record.json"
    record = json.loads(record_path.read_text())
    record["init_path"] = "/moved/away/runs/sc4/checkpoint"
    record_path.write_text(json.dumps(record))
    moved = predict_samples(root, rows, "down", n_samples=1)
    assert np.allclose(moved["predictions"]["zero-shot"], samples["predictions"]["zero-shot"][:1])
    # nothing to predict without checkpoints: no panel
    assert predict_samples(root, rows, "elsewhere") is None
    for ckpt in ("sc4", "ft4"):
        shutil.rmtree(root / "runs" / ckpt / "checkpoint")
    assert predict_samples(root, rows, "down") is None


def test_damaged_history_is_one_line(tmp_path):
    from pdefm.report.samples import read_histories

    run = tmp_path / "runs" / "scratch-scratch-8-0"
    run.mkdir(parents=True)
    (run / "record.json").write_text(json.dumps({"status": "completed", "history": [{"a": 1}]}))
    with pytest.raises(PdefmError, match="field 'history' must be a list"):
        read_histories(tmp_path, [row("scratch", 8, 0.1)])
    assert read_histories(tmp_path, [row("scratch", 8, 0.1, status="failed")]) == {}


def test_a_samples_panel_shows_the_coefficient_when_the_forcing_is_constant():
    from pdefm.report.samples import shown_input

    rng = np.random.default_rng(0)
    channels = ["source", "diffusion_xx", "diffusion_yy", "diffusion_xy"]
    fields = ["source", "diffusion_xx", "diffusion_yy"]
    x = np.ones((2, 4, 8, 8))
    x[:, 1] = x[:, 2] = rng.uniform(1, 5, size=(2, 8, 8))
    x[:, 3] = 0.0
    assert shown_input(x, channels, fields) == "diffusion_xx"
    x[:, 0] = rng.normal(size=(2, 8, 8))  # a forcing field: the source is what varies
    assert shown_input(x, channels, fields) == "source"
    caption = figures.samples_caption({"input_name": "diffusion_xx"})
    assert "the diffusion_xx field (input)" in caption
    # drawn over its own range on a sequential map; a signed source stays symmetric around 0
    samples = {**sample_dict(), "inputs": rng.uniform(1, 5, size=(3, 8, 8))}
    shown = figures.samples_figure(samples).axes[0].get_images()[0]
    assert shown.get_cmap().name == "cividis"
    assert shown.get_clim() == (samples["inputs"][0].min(), samples["inputs"][0].max())
    source = figures.samples_figure(sample_dict()).axes[0].get_images()[0]
    low, high = source.get_clim()
    assert source.get_cmap().name == "RdBu_r" and low == -high


# -- files for slides and phones -------------------------------------------------------------
def test_every_png_has_an_svg_that_rewrites_byte_identical(tmp_path):
    from pdefm.report import write_report

    rows = two_tasks(study_rows())
    hist = {r.run_id: history(r.n_train, r.seed) for r in rows if r.n_train}
    samples = sample_dict(s=1)  # an image panel: its SVG embeds rasters

    def write() -> dict:
        return write_report(rows, tmp_path, histories=hist, samples=samples)

    pngs = write()["figures"]
    assert {"error_vs_n.png", "validation.png", "samples.png"} <= {p.name for p in pngs}
    assert sorted(p.name for p in tmp_path.glob("*.svg")) == sorted(
        p.with_suffix(".svg").name for p in pngs
    )
    svgs = {}
    for png in pngs:
        svg = png.with_suffix(".svg")
        assert ET.parse(svg).getroot().tag == "{http://www.w3.org/2000/svg}svg"
        svgs[svg] = svg.read_bytes()
        assert b"<dc:date>" not in svgs[svg]
    again = write()  # rewriting the same report: the same bytes
    assert {png.with_suffix(".svg"): png.with_suffix(".svg").read_bytes()
            for png in again["figures"]} == svgs  # fmt: skip
    md = again["markdown"].read_text()
    assert "](error_vs_n.png)" in md and ".svg" not in md  # report.md keeps linking the PNG


def test_html_reads_on_a_narrow_screen(tmp_path):
    import re

    from pdefm.report import write_report
    from pdefm.report.render import CSS, is_numeric

    page = write_report(study_rows(), tmp_path)["html"].read_text()
    assert '<meta name="viewport" content="width=device-width, initial-scale=1">' in page
    assert "img{max-width:100%;height:auto}" in CSS and "td.num{text-align:right" in CSS
    assert ".table-scroll{overflow-x:auto" in CSS
    tables = page.count("<table>")
    assert tables and page.count('<div class="table-scroll"><table>') == tables
    cells = re.findall(r'<td( class="num")?>([^<]*)</td>', page)
    numeric = {text for cls, text in cells if cls}
    words = {text for cls, text in cells if not cls}
    assert {"0.525 ± 0.035", "512", "0.4 (range 0.4 to 0.4)"} <= numeric
    assert "Poisson, e in [5, 10]" in words and "fno-tiny" in words
    assert "&gt; 4 (unchecked)" in words  # a saving the savings check has not settled
    for text in ("0.12", "9.5%", "> 4", "< 0.78", "<= 8", "2.2x",
                 "0.051 ± n/a", "0.51 [0.47, 0.54]", "0.51 (range 0.4 to 0.6)", "3 / 3",
                 "1e-3", "nan"):  # fmt: skip
        assert is_numeric(text), text
    for text in ("fno-tiny", "poisson_1-5", "Poisson, e in [5, 10]", "—", "", "yes", "x"):
        assert not is_numeric(text), text
