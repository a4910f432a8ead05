"""The papers' figures from the pipeline's outputs, as PNG (the `report` stage).

    python -m reports.figures --out reports/figures [--runs runs] [--params params.yaml]

- ``cq_fig2_tsne_<model>.png``: CQ Fig. 2, copied from `eval.tsne`'s output (runs/eval/tsne);
- ``burn_fig3_5_grad_norms.png``: BURN Figs. 3 / 5, gradient norm per step of every BURN run's
  module groups, read from the runs' dvclive files (``train/grad_norm/<group>.tsv``, first seed);
- ``burn_fig4_ema_toy.png``: BURN Fig. 4, copied from `burn.ema_toy` (runs/burn/ema_toy);
- ``burn_fig8_lambda.png``: BURN Fig. 8, lambda(t) as the BURN runs logged it (``train/lambda.tsv``
  of burn, lambda_constant and lambda_step, stage 1): the report reads run outputs only;
- ``burn_svm_lowshot.png``: low-shot VOC07 SVM mAP (cross-validated cost) against k, one line per
  BURN-paper checkpoint, error bars = std over the samples;
- one line figure per entry of the report mapping's ``figures`` (BURN Appendix B.1: Fig. 6, InfoMin
  with weaker views over the epochs; Fig. 7, InfoMin's number of negatives on ReActNet-A and
  ResNet-50), each point a measured cell read as the tables read theirs (mean over seeds, error
  bar = 95 % t half-width), with its numbers in ``<name>.json`` beside the PNG:

      figures:
        burn_fig7_negatives:
          title: "..."
          xlabel: "# negatives (fraction of K)"
          panels:
            - ylabel: "Linear eval. top-1 (%)"
              source: "linear_burn:top1*100"                 # a point's default source
              lines:                                         # line -> {x label: run key | [run key, source]}
                ReActNet-A: {"1": burn/baseline-infomin, "1/4": burn/appendix-infomin-negatives_1_4-reactnet_a}

Choices where the papers are silent: a figure whose input is missing (the profile did not run it)
is skipped with a note on stderr, not an error; matplotlib's Agg backend; 100 dpi.
"""
from __future__ import annotations

import csv
import json
import shutil
import sys
from pathlib import Path
from typing import Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from common.checkpoint import write_json  # noqa: E402
from common.config import ArgumentParser, cli_main  # noqa: E402
from common.errors import ConfigError  # noqa: E402
from common.runs import (METRICS, OK, baseline_name, burn_configurations, burn_stage_name, seed_folders,  # noqa: E402
                         status_of)
from reports.aggregate import read_cell  # noqa: E402
from reports.mapping import load_report_params, panel_points  # noqa: E402


def _save(fig, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100, bbox_inches="tight")
    plt.close(fig)
    return path


def read_tsv(path: Path) -> tuple[list[float], list[float]]:
    with open(path) as f:
        rows = list(csv.reader(f, delimiter="\t"))
    steps, values = [], []
    for row in rows[1:]:
        try:
            steps.append(float(row[0]))
            values.append(float(row[1]))
        except (ValueError, IndexError):
            continue  # "nan" / "inf" written as text by dvclive
    return steps, values


def tsne_figures(runs: Path, out: Path) -> list[Path]:
    return [Path(shutil.copyfile(png, out / f"cq_fig2_tsne_{png.stem}.png"))
            for png in sorted((runs / "eval" / "tsne").glob("*.png"))]


def first_seed(run: Path) -> Path | None:
    """The first seed's folder of a run folder (runs/<group>/<name>/s<seed>), None if it has none."""
    folders = seed_folders(run)
    return next(iter(folders.values())) if folders else None


def curves(folder: Path) -> Path:
    return folder / "dvclive" / "plots" / "metrics" / "train"


def grad_norm_figure(runs: Path, out: Path) -> list[Path]:
    """One panel per BURN run (stage 1 and 2, S2-BNN; first seed): gradient norm per module group."""
    wanted = {burn_stage_name(c, stage) for c in burn_configurations(runs) for stage in (1, 2)} | {baseline_name("s2bnn")}
    names = [p.name for p in sorted((runs / "burn").glob("*")) if p.name in wanted]
    folders = [(name, first_seed(runs / "burn" / name)) for name in names]
    panels = [(name, sorted((curves(f) / "grad_norm").glob("*.tsv"))) for name, f in folders if f is not None]
    panels = [(name, files) for name, files in panels if files]
    if not panels:
        return []
    cols = min(4, len(panels))
    rows = (len(panels) + cols - 1) // cols
    fig, axes = plt.subplots(rows, cols, figsize=(4 * cols, 3 * rows), squeeze=False)
    for ax, (name, files) in zip(axes.flat, panels):
        for f in files:
            ax.plot(*read_tsv(f), label=f.stem)
        ax.set_title(name, fontsize=9)
        ax.set_xlabel("step")
        ax.set_ylabel("gradient norm")
        ax.legend(fontsize=6)
    for ax in list(axes.flat)[len(panels):]:
        ax.axis("off")
    fig.suptitle("Gradient norms per module group (BURN Figs. 3, 5)")
    return [_save(fig, out / "burn_fig3_5_grad_norms.png")]


def ema_figure(runs: Path, out: Path) -> list[Path]:
    png = runs / "burn" / "ema_toy" / "ema_toy.png"
    return [Path(shutil.copyfile(png, out / "burn_fig4_ema_toy.png"))] if png.is_file() else []


LAMBDA_RUNS = {"burn": "Eq. 3 (cosine)", "lambda_constant": "constant", "lambda_step": "step H(-t + T/2)"}



def lambda_figure(runs: Path, out: Path) -> list[Path]:
    """lambda(t) as the BURN runs logged it (stage 1, first seed): Eq. 3 against its ablations."""
    fig, ax = plt.subplots(figsize=(5, 3.2))
    drawn = 0
    for configuration, label in LAMBDA_RUNS.items():
        folder = first_seed(runs / "burn" / burn_stage_name(configuration, 1))
        tsv = curves(folder) / "lambda.tsv" if folder is not None else None
        if tsv is not None and tsv.is_file():
            ax.plot(*read_tsv(tsv), label=label)
            drawn += 1
    if not drawn:
        plt.close(fig)
        return []
    ax.set_xlabel("t (steps)")
    ax.set_ylabel("lambda(t)")
    ax.set_title("Balancing function lambda(t) (BURN Fig. 8)")
    ax.legend(fontsize=8)
    return [_save(fig, out / "burn_fig8_lambda.png")]


def lowshot_figure(runs: Path, out: Path) -> list[Path]:
    files = [f / METRICS for group in sorted((runs / "eval" / "svm").glob("*")) if group.is_dir()
             for f in [first_seed(run) for run in sorted(group.glob("*"))] if f is not None]
    files = [f for f in files if f.is_file()]
    fig, ax = plt.subplots(figsize=(5.5, 3.5))
    drawn = 0
    for f in files:
        metrics = json.loads(f.read_text())
        low = metrics.get("lowshot") or {}
        if status_of(metrics) != OK or not low:
            continue
        ks = sorted(low, key=int)
        ax.errorbar([int(k) for k in ks], [100 * low[k]["cv"]["mean"] for k in ks],
                    yerr=[100 * low[k]["cv"]["std"] for k in ks], marker="o", capsize=2, label=f.parent.parent.name)
        drawn += 1
    if not drawn:
        plt.close(fig)
        return []
    ax.set_xscale("log", base=2)
    ax.set_xlabel("k (positives per class)")
    ax.set_ylabel("mAP (%)")
    ax.set_title("Low-shot VOC07 SVM (cross-validated cost)")
    ax.legend(fontsize=6)
    return [_save(fig, out / "burn_svm_lowshot.png")]


def line_points(spec: dict, runs: Path, where: str) -> dict:
    """{line: {x label: measured cell}} of one panel of a mapped line figure."""
    return {label: {x: read_cell(runs, run, source) for x, (run, source) in points.items()}
            for label, points in panel_points(spec, where).items()}


def line_figure(name: str, spec: dict, runs: Path, out: Path) -> list[Path]:
    """A mapped line figure (the mapping's ``figures.<name>``): PNG + the numbers as JSON; nothing
    when no point was measured. x labels are categories, in the order the mapping gives them."""
    where = f"report.figures.{name}"
    panels = spec.get("panels") if isinstance(spec, dict) else None
    if not isinstance(panels, list) or not panels:
        raise ConfigError(f"{where}: expected {{title, xlabel, panels: [...]}}")
    data = [(p.get("ylabel", ""), line_points(p, runs, f"{where}.panels[{i}]")) for i, p in enumerate(panels)]
    if not any(isinstance(c, (dict, int, float)) for _, lines in data for pts in lines.values() for c in pts.values()):
        return []
    fig, axes = plt.subplots(1, len(data), figsize=(4.5 * len(data), 3.4), squeeze=False)
    for ax, (ylabel, lines) in zip(axes.flat, data):
        ticks = list(dict.fromkeys(x for points in lines.values() for x in points))  # first seen, first
        for label, points in lines.items():
            ys = [c["value"] if isinstance(c, dict) else c if isinstance(c, (int, float)) else float("nan")
                  for c in points.values()]  # a cell not measured ("not run") is a gap
            err = [c.get("half", 0.0) if isinstance(c, dict) else 0.0 for c in points.values()]
            ax.errorbar([ticks.index(x) for x in points], ys, yerr=err, marker="o", capsize=2, label=label)
        ax.set_xticks(range(len(ticks)), ticks)
        ax.set_xlabel(spec.get("xlabel", ""))
        ax.set_ylabel(ylabel)
        ax.legend(fontsize=7)
    fig.suptitle(spec.get("title", name), fontsize=10)
    write_json({"title": spec.get("title", name), "panels": {y: lines for y, lines in data}}, out / f"{name}.json")
    return [_save(fig, out / f"{name}.png")]


def make_figures(runs: str | Path, out: str | Path, mapped: dict | None = None) -> list[Path]:
    """Every figure whose inputs are there; `mapped`: the report mapping's ``figures``."""
    runs, out = Path(runs), Path(out)
    out.mkdir(parents=True, exist_ok=True)
    made: list[Path] = []
    makers = [("t-SNE", lambda: tsne_figures(runs, out)), ("gradient norms", lambda: grad_norm_figure(runs, out)),
              ("EMA toy", lambda: ema_figure(runs, out)), ("lambda(t)", lambda: lambda_figure(runs, out)),
              ("low-shot SVM", lambda: lowshot_figure(runs, out))]
    makers += [(name, lambda name=name, spec=spec: line_figure(name, spec, runs, out))
               for name, spec in (mapped or {}).items()]
    for name, fn in makers:
        got = fn()
        if not got:
            print(f"note: no {name} figure (its runs are not there)", file=sys.stderr)
        made += got
    return made


@cli_main
def main(argv: Sequence[str] | None = None) -> int:
    parser = ArgumentParser(prog="python -m reports.figures", description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True, help="folder for the PNG files")
    parser.add_argument("--runs", default="runs")
    parser.add_argument("--params", default="params.yaml", help="its report_mapping's `figures` section")
    args = parser.parse_args(argv)
    mapped = {}
    if Path(args.params).is_file():
        mapped = (load_report_params(args.params).get("report") or {}).get("figures") or {}
    for path in make_figures(args.runs, args.out, mapped):
        print(path)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
