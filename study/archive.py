"""What a study part's numbers come from, committed beside its part file.

A part's workspace (`.study2/<half>`) is not committed: its encoders and checkpoints are large
and any session can make them again. What a reader needs to check a number is smaller: for every
arm the part evaluates (and the teacher it measured), the pretraining run's metrics.json and its
training curves (dvclive's TSVs, as [step, value] pairs), and each evaluation's metrics.json. They
go to `reports/study/v2/runs/<half>-<group>-s<seed>/`, one JSON file per run folder, named by its
path under the workspace's runs/ (`burn/burn-stage2/s1.json`, `eval/knn/burn/burn-stage2/s1.json`).
An evaluation's per-image predictions are left out of its copy: their 0/1 correctness is in the
part file already, and the copies stay a few kilobytes each.
"""
from __future__ import annotations

import json
import re
from pathlib import Path

from common import predictions
from common.runs import METRICS
from common.checkpoint import write_json

CURVES = Path("dvclive") / "plots" / "metrics"
SEED_FOLDER = re.compile(r"^s(\d+)$")


def read_curves(folder: Path) -> dict[str, list[list[float]]]:
    """{curve name: [[step, value], ...]} of a run folder's dvclive TSVs (`train/loss`, ...)."""
    curves = {}
    root = folder / CURVES
    for tsv in sorted(root.rglob("*.tsv")) if root.is_dir() else []:
        rows = [line.split("\t") for line in tsv.read_text().splitlines()[1:] if line.strip()]
        curves[tsv.relative_to(root).with_suffix("").as_posix()] = [[float(r[0]), float(r[-1])] for r in rows]
    return curves


def run_record(folder: Path) -> dict:
    """A run folder's metrics (per-image predictions left out) and its curves."""
    metrics = json.loads((folder / METRICS).read_text())
    metrics.pop(predictions.KEY, None)
    record = {"metrics": metrics}
    curves = read_curves(folder)
    if curves:
        record["curves"] = curves
    return record


def _key_and_seed(rel: Path) -> tuple[str, int] | None:
    """(run key without precision, seed) of a run folder's path under runs/ (or under
    runs/eval/<suite>/); None where the path holds no seed folder."""
    parts = rel.parts
    for i, part in enumerate(parts):
        found = SEED_FOLDER.match(part)
        if found and i >= 2:
            return "/".join(parts[:2]), int(found[1])
    return None


def part_folders(runs_root: Path, keys: set[str], seed: int, teacher_keys: set[str], suites: list[str]) -> list[Path]:
    """Every run folder (pretraining, and the given suites' evaluations) of one of `keys` at `seed`,
    or of a teacher key at any seed (the teacher is measured under its own seed)."""
    keys = {k.partition("@")[0] for k in keys}  # a run at another precision set: the same run folder's p<set>/
    wanted = []
    candidates = [(runs_root, p) for section in ("cq", "burn") if (runs_root / section).is_dir()
                  for p in (runs_root / section).rglob(METRICS)]
    for suite in suites:
        base = runs_root / "eval" / suite
        candidates += [(base, p) for p in base.rglob(METRICS)] if base.is_dir() else []
    for base, metrics in candidates:
        if CURVES.parts[0] in metrics.parent.parts:  # dvclive's own summary, inside a run folder
            continue
        found = _key_and_seed(metrics.parent.relative_to(base))
        if found and (found[0] in teacher_keys or (found[0] in keys and found[1] == seed)):
            wanted.append(metrics.parent)
    return sorted(wanted)


def archive_part(runs_root: Path, out: Path, keys: set[str], seed: int, teacher_keys: set[str],
                 suites: list[str]) -> list[Path]:
    """Write the records of a part's run folders under `out`; returns the files written."""
    written = []
    for folder in part_folders(runs_root, keys, seed, teacher_keys, suites):
        rel = folder.relative_to(runs_root)
        path = out / rel.parent / f"{rel.name}.json"
        write_json(run_record(folder), path)
        written.append(path)
    return written
