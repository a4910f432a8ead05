"""Pilots of the claims study's second edition, run on seed 0 before registration.

    python -m study.pilot teacher      # the BURN FP teacher: kNN after every snapshot epoch
    python -m study.pilot cq           # the CQ schedule: SimCLR and CQ-C, kNN and linear per epoch
    python -m study.pilot burn         # the student schedule: BURN's two stages, after the teacher

A pilot chooses a setting the registration then fixes; it never enters a verdict. It runs in
`.study2/pilot/` (outside git), with the v2 profile rendered to a plain params file (seed 0, the
data root made absolute), and writes its record to reports/study/v2/pilots/<name>-s0.json: every
number it measured, the commit, the CPU model and the minutes. Killed, it starts again where it
stopped: the training resumes from its checkpoint and a finished evaluation is not run again.

The teacher pilot trains the teacher of profiles/study2_burn.yaml (its `burn.teacher.train`,
snapshots after each epoch but the last) and the untrained binary student, then measures kNN
top-1 (k 200, T 0.1, as the study) of the untrained student, of every snapshot and of the final
teacher on the whole test set, and the margin of each over the untrained student. The rule it
serves (issue: a teacher worth distilling): the teacher must beat the untrained student by at
least 15 kNN points.
"""
from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Sequence

from common.checkpoint import write_json
from common.config import ArgumentParser, cli_main, dump_params, read_params_file
from common.errors import ConfigError
from common import runs
from common.provenance import cpu_model, git_commit

REPO = Path(__file__).resolve().parents[1]
V2 = REPO / "reports" / "study" / "v2"
PILOTS = V2 / "pilots"
WORK = REPO / ".study2" / "pilot"
PROFILES = {"burn": REPO / "profiles" / "study2_burn.yaml", "cq": REPO / "profiles" / "study2_cq.yaml"}
TEACHER_MARGIN = 15.0  # kNN points the teacher must beat the untrained student by
SEED = 0


def render(half: str, seed: int = SEED) -> Path:
    """The half's profile as a plain params file in the pilot folder (seed, absolute data root)."""
    params = read_params_file(PROFILES[half], str(PROFILES[half].relative_to(REPO)))
    params["seeds"] = [seed]
    params["data"]["root"] = str((REPO / params["data"]["root"]).resolve())
    path = WORK / f"params-{half}.yaml"
    WORK.mkdir(parents=True, exist_ok=True)
    path.write_text(dump_params(params))
    return path


def call(argv: list[str]) -> None:
    """Run one project CLI in the pilot folder; a failure stops the pilot with its one line."""
    done = subprocess.run([sys.executable, "-m", *argv], cwd=WORK)
    if done.returncode != 0:
        raise ConfigError(f"pilot step failed (exit {done.returncode}): python -m {' '.join(argv)}")


def finished(folder: Path) -> dict | None:
    path = folder / runs.METRICS
    if not path.is_file():
        return None
    metrics = json.loads(path.read_text())
    return metrics if runs.status_of(metrics) == runs.OK else None


def knn(encoder: Path, out: Path, root: str) -> float:
    """kNN top-1 (points) on the whole test set, as the study measures it (k 200, T 0.1)."""
    if finished(out) is None:
        call(["eval.knn", "--encoder", str(encoder), "--dataset", "cifar10_jpeg", "--root", root,
              "--out", str(out), "--k", "200", "--temperature", "0.1", "--cache-dir", str(WORK / "features"),
              "--device", "cpu"])
    return 100.0 * finished(out)["top1"]


def linear(encoder: Path, out: Path, root: str) -> float:
    """Linear top-1 (points) as the study measures it (burn preset, 100 epochs, lr 0.1, cached features)."""
    if finished(out) is None:
        call(["eval.linear", "--encoder", str(encoder), "--dataset", "cifar10_jpeg", "--root", root,
              "--out", str(out), "--preset", "burn", "--epochs", "100", "--lr", "0.1",
              "--cache-dir", str(WORK / "features"), "--device", "cpu"])
    return 100.0 * finished(out)["top1"]


def margins(curve: dict, untrained: float) -> dict:
    return {k: round(v - untrained, 2) for k, v in curve.items()}


def record_of(name: str, half: str, started: float, **fields) -> dict:
    record = {"pilot": name, "seed": SEED, "profile": str(PROFILES[half].relative_to(REPO)), **fields,
              "commit": git_commit(REPO), "cpu": cpu_model(), "minutes": round((time.time() - started) / 60, 1)}
    write_json(record, PILOTS / f"{name}-s{SEED}.json")
    return record


def teacher() -> dict:
    started = time.time()
    params_file = render("burn")
    params = read_params_file(params_file)
    root = params["data"]["root"]
    cfg = params["burn"]["teacher"]
    run = WORK / "runs" / "teacher" / f"s{SEED}"
    student = WORK / "runs" / "random_init" / f"s{SEED}"
    call(["burn.pretrain", "--params", str(params_file), "--method", cfg["method"], "--backbone", cfg["backbone"],
          "--as-teacher", "--out", str(run), f"seed={SEED}"])
    call(["common.random_init", "--params", str(params_file), "--section", "burn", "--backbone",
          params["burn"]["student"], "--out", str(student), f"seed={SEED}"])
    untrained = knn(student / runs.ENCODER, WORK / "eval" / "knn-untrained", root)
    curve = {}
    for epoch in cfg["train"].get("snapshot_epochs", []):
        curve[f"epoch {epoch}"] = knn(run / "snapshots" / f"encoder-e{epoch}.pt", WORK / "eval" / f"knn-e{epoch}", root)
    final = knn(run / runs.ENCODER, WORK / "eval" / "knn-final", root)
    train = json.loads((run / runs.METRICS).read_text())
    record = record_of(
        "teacher", "burn", started, teacher=cfg, method_settings=params["burn"]["methods"][cfg["method"]],
        knn_top1={"untrained student": untrained, **curve, "final": final},
        margin_over_untrained=margins({**curve, "final": final}, untrained),
        rule=f"final margin >= {TEACHER_MARGIN} kNN points", passes=final - untrained >= TEACHER_MARGIN,
        train={k: train.get(k) for k in ("status", "step", "final_loss", "seconds")})
    print(json.dumps(record["knn_top1"]), "passes" if record["passes"] else "FAILS", f"+{TEACHER_MARGIN}")
    return record


def cq() -> dict:
    """SimCLR (baseline) and CQ-C (the slowest proposed arm) on the v2 CQ profile: kNN and linear
    of every epoch's snapshot and of the final encoder, beside the untrained network."""
    started = time.time()
    params_file = render("cq")
    params = read_params_file(params_file)
    root, backbone = params["data"]["root"], params["cq"]["backbones"][0]
    untrained_run = WORK / "runs" / "cq-random_init" / f"s{SEED}"
    call(["common.random_init", "--params", str(params_file), "--backbone", backbone, "--out", str(untrained_run),
          f"seed={SEED}"])
    untrained = {"knn": knn(untrained_run / runs.ENCODER, WORK / "eval" / "cq-knn-untrained", root),
                 "linear": linear(untrained_run / runs.ENCODER, WORK / "eval" / "cq-linear-untrained", root)}
    arms = {}
    for variant in ("baseline", *params["cq"]["variants"]):
        run = WORK / "runs" / f"cq-simclr-{variant}" / f"s{SEED}"
        call(["cq.pretrain", "--params", str(params_file), "--method", "simclr", "--variant", variant,
              "--backbone", backbone, "--out", str(run), f"seed={SEED}"])
        encoders = {f"epoch {e}": run / "snapshots" / f"encoder-e{e}.pt" for e in params["cq"]["train"]["snapshot_epochs"]}
        encoders["final"] = run / runs.ENCODER
        curves = {suite: {name: measure(path, WORK / "eval" / f"cq-{variant}-{suite}-{name.replace(' ', '')}", root)
                          for name, path in encoders.items()}
                  for suite, measure in (("knn", knn), ("linear", linear))}
        train = json.loads((run / runs.METRICS).read_text())
        arms[variant] = {"top1": curves, "margin_over_untrained": {s: margins(c, untrained[s]) for s, c in curves.items()},
                         "train": {k: train.get(k) for k in ("status", "step", "final_loss", "seconds")}}
    # the cost of the fine-tuning suite at the study's settings (it sizes the parts), on SimCLR
    finetune = {}
    suite = params["eval"]["suites"]["finetune"]
    for item, extra in suite["variants"].items():
        out = WORK / "eval" / f"cq-baseline-finetune-{item}"
        if finished(out) is None:
            args = {**suite["args"], **extra, "root": root, "subset_dir": str(WORK / "subsets"), "seed": SEED}
            flags = [f"--{k.replace('_', '-')}={v}" for k, v in args.items()]
            call(["eval.finetune", "--encoder", str(WORK / "runs" / "cq-simclr-baseline" / f"s{SEED}" / runs.ENCODER),
                  "--out", str(out), *flags])
        metrics = finished(out)
        finetune[item] = {"top1": 100.0 * metrics["top1"], "seconds": metrics["seconds"],
                          "num_labelled": metrics["num_labelled"]}
    record = record_of("cq", "cq", started, train=params["cq"]["train"], untrained=untrained, arms=arms,
                       finetune_simclr=finetune)
    print(json.dumps({v: a["margin_over_untrained"] for v, a in arms.items()}))
    return record


def burn() -> dict:
    """BURN (its two stages, the piloted teacher) on the v2 BURN profile: kNN and linear after
    each stage beside the untrained binary network."""
    started = time.time()
    params_file = render("burn")
    params = read_params_file(params_file)
    root, student = params["data"]["root"], params["burn"]["student"]
    teacher_runs, untrained_run = WORK / "runs" / "teacher", WORK / "runs" / "random_init" / f"s{SEED}"
    if not (teacher_runs / f"s{SEED}" / runs.ENCODER).is_file():
        raise ConfigError("the BURN pilot needs the teacher pilot's teacher: run `python -m study.pilot teacher` first")
    stages = {1: WORK / "runs" / "burn-stage1" / f"s{SEED}", 2: WORK / "runs" / "burn-stage2" / f"s{SEED}"}
    for stage, run in stages.items():
        init = ["--init", str(stages[1])] if stage == 2 else []
        call(["burn.pretrain", "--params", str(params_file), "--method", "burn", "--variant", "burn", "--backbone",
              student, "--stage", str(stage), "--teacher", str(teacher_runs), *init, "--out", str(run), f"seed={SEED}"])
    encoders = {"untrained": untrained_run, "stage 1": stages[1], "stage 2": stages[2]}
    top1 = {suite: {name: measure(run / runs.ENCODER, WORK / "eval" / f"burn-{suite}-{name.replace(' ', '')}", root)
                    for name, run in encoders.items()}
            for suite, measure in (("knn", knn), ("linear", linear))}
    trained = {s: {k: v for k, v in c.items() if k != "untrained"} for s, c in top1.items()}
    record = record_of("burn", "burn", started, train=params["burn"]["train"], top1=top1,
                       margin_over_untrained={s: margins(c, top1[s]["untrained"]) for s, c in trained.items()},
                       seconds={f"stage {k}": json.loads((r / runs.METRICS).read_text()).get("seconds")
                                for k, r in stages.items()})
    print(json.dumps(record["margin_over_untrained"]))
    return record


PILOT_RUNS = {"teacher": teacher, "cq": cq, "burn": burn}


@cli_main
def main(argv: Sequence[str] | None = None) -> int:
    parser = ArgumentParser(prog="python -m study.pilot", description=__doc__.splitlines()[0])
    parser.add_argument("pilot", choices=sorted(PILOT_RUNS))
    args = parser.parse_args(argv)
    PILOT_RUNS[args.pilot]()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
