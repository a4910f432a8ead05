"""VOC07 SVM classification on frozen features: full set and low-shot (BURN Tables 3 and 9).

The protocol (docs/protocols.md section 3, after the self-supervision benchmark BURN follows):
- features: one row per image, each divided by (its L2 norm + 1e-5), once, at load;
- one binary linear SVM per class, trained with LIBLINEAR (`liblinear-official`, eval/liblinear.py):
  L2-regularized squared hinge, dual coordinate descent (-s 1), tolerance 1e-4 (-e 0.0001),
  positives weighted 2 : 1 (-w1 2);
- labels per class: 1 present, 0 only difficult, -1 absent. Training on the full set treats 0 as
  negative; at test (and on held-out folds) images labelled 0 are left out of that class's AP;
- AP: all-points interpolated (eval/voc_ap.py); mAP = unweighted mean over classes.

Full set: per class, the cost is chosen by 3-fold cross-validation on trainval (metric: AP on the
held-out fold, averaged over folds), then the SVM is refit on all of trainval at that cost and
tested on test.

Low-shot: k in {1, 2, 4, ..., 96}, 5 independent samples. For each (k, sample, class) k positives
and 19k negatives are drawn from trainval; that class's SVM is trained on them and tested on the
whole test set. The cost is chosen three ways, all reported (the same SVMs, only the choice
differs):
- "reference": the rule of the reference low-shot scripts the papers used: ONE cost per k, the
  cost whose test mAP averaged over the samples is highest; every sample is reported at that
  cost. The paper tables (BURN Tables 3 and 9) read this rule;
- "cv": per class, cross-validation inside the sampled training set (see below): a choice that
  never looks at test labels, shown beside it;
- "best_test": one cost per (k, sample), its best test mAP: an upper bound, more optimistic than
  the reference rule by construction.
mean +- std of mAP over the samples is reported for every k and mode.

Choices made where the papers and the protocol are silent (each one is a named constant below):
- The SVM solver (LIBLINEAR's options, bias, iteration cap, determinism, speed): eval/liblinear.py.
- Difficult (0) images are never drawn in low-shot samples: positives come from label 1, negatives
  from label -1 only.
- Too few images: if trainval holds fewer than k positives (or 19k negatives) for a class, all of
  them are used; the shortfall is listed in the output ("lowshot_short") and warned about. (The
  project's real VOC07 subset has 500 trainval images: most classes are short from k = 16 on.)
- Seeds: each low-shot sample is drawn with numpy's generator seeded by (seed, sample id, k,
  class index); fold splits use (seed, sample id, k, class index, 1) and (seed, class index, 2)
  for the full set. Sample lists are written to a JSON file and reused when that file exists.
- Folds are stratified: a class's positives, and separately its other images, are shuffled and
  dealt round-robin into the folds, so every held-out fold contains a positive. Number of folds:
  min(3, #positives, #negatives) of the training set.
- "cv" at k = 1: with a single positive no fold can hold one out, so no cross-validation is
  possible; the cost nearest (in log scale) to LIBLINEAR's default C = 1 is used and labelled
  as such in the output ("cv_fallback_cost").
- Cost ties (equal CV AP, or equal test mAP): the smallest cost wins (strongest regularization).
- std over samples: population std (ddof = 0), as numpy's default.
- AP values are fractions in [0, 1] (the papers print percentages).

Features file (written by `save_features`; read by `load_features` and the CLI): a torch file
    {"trainval": {"features": (N, D) float, "labels": (N, C) int in {1, 0, -1}},
     "test":     {"features": (M, D) float, "labels": (M, C) int in {1, 0, -1}},
     "classes":  optional list of C class names (default: the 20 VOC classes when C = 20)}

CLI:
    python -m eval.svm --features FEATS.pt --out OUT_DIR [--mode full|lowshot|both]
        [--costs 0.01,0.1,...] [--seed 0] [--samples 5] [--ks 1,2,4,...] [--n-jobs N]
        [--samples-file PATH] [--no-project] [--progress]
writes OUT_DIR/metrics.json (and OUT_DIR/lowshot_samples.json unless --samples-file is given).
"""
from __future__ import annotations

import argparse
import hashlib
import json
import math
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from common.config import ArgumentParser, cli_main, positive_int
from common.runs import METRICS
from common.errors import ConfigError
from eval.liblinear import LIBLINEAR_OPTIONS, ClassJob, best_cost_index, default_n_jobs, run_jobs

VOC_CLASSES = ("aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair",
               "cow", "diningtable", "dog", "horse", "motorbike", "person", "pottedplant", "sheep",
               "sofa", "train", "tvmonitor")
DEFAULT_COSTS = (0.01, 0.1, 1.0, 2.0, 5.0, 10.0, 15.0, 20.0, 50.0, 100.0, 1000.0)
DEFAULT_KS = (1, 2, 4, 8, 16, 32, 64, 96)
DEFAULT_SAMPLES = 5
CV_FOLDS = 3
NEG_PER_POS = 19            # low-shot: 19k negatives for k positives
NORM_EPS = 1e-5             # x / (||x||_2 + 1e-5)
LOWSHOT_MODES = ("reference", "cv", "best_test")  # cost rules of the low-shot suite
HEADLINE = "full.map"  # the number `dvc exp show` lists per run (eval.pipeline's summary)
DEFAULT_COST = 1.0          # LIBLINEAR's default C: the cv fallback when k = 1


# --------------------------------------------------------------------------------------------
# Features
# --------------------------------------------------------------------------------------------

@dataclass
class SvmData:
    """Both splits, features already L2-normalised (float64), labels (N, C) int8 in {1, 0, -1}."""
    trainval_x: np.ndarray
    trainval_y: np.ndarray
    test_x: np.ndarray
    test_y: np.ndarray
    classes: tuple[str, ...]


def l2_normalize(x: np.ndarray) -> np.ndarray:
    """Each row divided by (its L2 norm + 1e-5), in float64."""
    x = np.asarray(x, dtype=np.float64)
    return x / (np.linalg.norm(x, axis=1, keepdims=True) + NORM_EPS)


def _check_split(x, y, split: str, source: str) -> tuple[np.ndarray, np.ndarray]:
    x, y = np.asarray(x), np.asarray(y)
    if x.ndim != 2 or x.shape[0] < 1 or x.shape[1] < 1:
        raise ConfigError(f"{source}: {split} features must be a non-empty (N, D) array, got shape {x.shape}")
    if y.ndim != 2 or y.shape[0] != x.shape[0]:
        raise ConfigError(f"{source}: {split} labels must be ({x.shape[0]}, C), got shape {y.shape}")
    if not np.issubdtype(x.dtype, np.floating) or not np.all(np.isfinite(x)):
        raise ConfigError(f"{source}: {split} features must be finite floats")
    values = set(np.unique(y).tolist())
    if not values <= {1, 0, -1}:
        raise ConfigError(f"{source}: {split} labels must be in {{1, 0, -1}}, found {sorted(values)}")
    return x, y.astype(np.int8)


def make_svm_data(trainval_x, trainval_y, test_x, test_y, classes: Sequence[str] | None = None,
                  source: str = "features") -> SvmData:
    """Validate both splits (one-line ConfigError naming ``source``) and L2-normalise once."""
    trainval_x, trainval_y = _check_split(trainval_x, trainval_y, "trainval", source)
    test_x, test_y = _check_split(test_x, test_y, "test", source)
    if trainval_x.shape[1] != test_x.shape[1] or trainval_y.shape[1] != test_y.shape[1]:
        raise ConfigError(f"{source}: trainval and test disagree on feature dim or class count "
                          f"({trainval_x.shape[1]}/{test_x.shape[1]} dims, "
                          f"{trainval_y.shape[1]}/{test_y.shape[1]} classes)")
    num_classes = trainval_y.shape[1]
    if classes is None:
        classes = VOC_CLASSES if num_classes == len(VOC_CLASSES) else [f"class{c}" for c in range(num_classes)]
    classes = tuple(str(name) for name in classes)
    if len(classes) != num_classes:
        raise ConfigError(f"{source}: {len(classes)} class names for {num_classes} label columns")
    for c, name in enumerate(classes):
        if not (trainval_y[:, c] == 1).any() or not (trainval_y[:, c] == -1).any():
            raise ConfigError(f"{source}: class '{name}' needs at least one positive (1) and one "
                              "negative (-1) trainval image")
        if not (test_y[:, c] == 1).any():
            raise ConfigError(f"{source}: class '{name}' has no positive (1) test image, so its AP is undefined")
    return SvmData(l2_normalize(trainval_x), trainval_y, l2_normalize(test_x), test_y, classes)


def save_features(path: str | Path, trainval_x, trainval_y, test_x, test_y,
                  classes: Sequence[str] | None = None) -> Path:
    """Write the features file the CLI reads (torch tensors; atomic)."""
    import torch
    from common.checkpoint import save_checkpoint

    obj = {split: {"features": torch.as_tensor(np.asarray(x), dtype=torch.float32),
                   "labels": torch.as_tensor(np.asarray(y), dtype=torch.int8)}
           for split, x, y in (("trainval", trainval_x, trainval_y), ("test", test_x, test_y))}
    if classes is not None:
        obj["classes"] = list(classes)
    return save_checkpoint(obj, path)


def load_features(path: str | Path) -> SvmData:
    """Read and validate a features file (format in the module docstring)."""
    import torch

    path = Path(path)
    source = f"--features {path}"
    if not path.is_file():
        raise ConfigError(f"{source}: file not found")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # not a torch file, truncated, pickled code
        raise ConfigError(f"{source}: cannot be read as a weights-only torch file ({type(err).__name__})") from None
    arrays = []
    for split in ("trainval", "test"):
        part = obj.get(split) if isinstance(obj, dict) else None
        if not isinstance(part, dict) or not all(torch.is_tensor(part.get(key)) for key in ("features", "labels")):
            raise ConfigError(f"{source}: expected {{'{split}': {{'features': tensor, 'labels': tensor}}, ...}}")
        feats = part["features"].double() if part["features"].is_floating_point() else part["features"]
        arrays += [feats.numpy(), part["labels"].numpy()]
    return make_svm_data(*arrays, classes=obj.get("classes"), source=source)


# --------------------------------------------------------------------------------------------
# Folds and low-shot samples
# --------------------------------------------------------------------------------------------

def stratified_folds(positive: np.ndarray, n_folds: int, rng: np.random.Generator) -> np.ndarray:
    """Fold id per row: positives, then the other rows, shuffled and dealt round-robin."""
    folds = np.empty(len(positive), dtype=np.int64)
    for group in (np.flatnonzero(positive), np.flatnonzero(~positive)):
        folds[rng.permutation(group)] = np.arange(len(group)) % n_folds
    return folds


def _folds_or_none(labels: np.ndarray, n_folds: int, rng: np.random.Generator) -> np.ndarray | None:
    positive = labels == 1
    n_folds = min(n_folds, int(positive.sum()), int((~positive).sum()))
    return stratified_folds(positive, n_folds, rng) if n_folds >= 2 else None


def draw_lowshot_sample(labels: np.ndarray, k: int, rng: np.random.Generator) -> tuple[list[int], list[int]]:
    """(positives, negatives): k rows labelled 1 and 19k labelled -1 (fewer if trainval lacks them)."""
    pool_pos, pool_neg = np.flatnonzero(labels == 1), np.flatnonzero(labels == -1)
    pos = rng.choice(pool_pos, size=min(k, pool_pos.size), replace=False)
    neg = rng.choice(pool_neg, size=min(NEG_PER_POS * k, pool_neg.size), replace=False)
    return sorted(pos.tolist()), sorted(neg.tolist())


def _labels_digest(labels: np.ndarray) -> str:
    return hashlib.sha1(np.ascontiguousarray(labels, dtype=np.int8).tobytes()).hexdigest()


def lowshot_samples(labels: np.ndarray, classes: Sequence[str], ks: Sequence[int], n_samples: int,
                    seed: int, path: str | Path | None = None) -> dict:
    """The low-shot training sets: {(k, sample, class index): (positives, negatives)} rows of trainval.

    Drawn with a generator seeded by (seed, sample, k, class index). With ``path``, sets already
    in that JSON file are read back instead of drawn (the file is the record of what was used),
    missing ones are drawn and the file is rewritten.
    """
    stored: dict = {}
    if path is not None and Path(path).is_file():
        stored = _read_samples_file(Path(path), labels, classes, seed)
    samples, changed = {}, False
    for k in ks:
        for s in range(n_samples):
            for c, name in enumerate(classes):
                entry = stored.get("samples", {}).get(str(k), {}).get(str(s), {}).get(name)
                if entry is None:
                    entry = dict(zip(("positives", "negatives"),
                                     draw_lowshot_sample(labels[:, c], k, np.random.default_rng([seed, s, k, c]))))
                    stored.setdefault("samples", {}).setdefault(str(k), {}).setdefault(str(s), {})[name] = entry
                    changed = True
                samples[(k, s, c)] = (np.asarray(entry["positives"], dtype=np.int64),
                                      np.asarray(entry["negatives"], dtype=np.int64))
    if path is not None and changed:
        from common.checkpoint import write_json
        stored.update(seed=seed, neg_per_pos=NEG_PER_POS, num_trainval=int(labels.shape[0]),
                      labels_sha1=_labels_digest(labels), classes=list(classes),
                      note="row indices into the trainval split of the features file")
        write_json(stored, path)
    return samples


def _read_samples_file(path: Path, labels: np.ndarray, classes: Sequence[str], seed: int) -> dict:
    where = f"--samples-file {path}"
    try:
        stored = json.loads(path.read_text())
    except (OSError, ValueError) as err:
        raise ConfigError(f"{where}: not readable JSON ({type(err).__name__})") from None
    if not isinstance(stored, dict) or not isinstance(stored.get("samples"), dict):
        raise ConfigError(f"{where}: expected a JSON object with a 'samples' field")
    if stored.get("seed") != seed:
        raise ConfigError(f"{where}: drawn with seed {stored.get('seed')}, not {seed}; pass that seed or another file")
    if stored.get("labels_sha1") != _labels_digest(labels):
        raise ConfigError(f"{where}: drawn for other trainval labels (different images or order)")
    try:
        entries = [(k, s, name, entry) for k, by_sample in stored["samples"].items()
                   for s, by_class in by_sample.items() for name, entry in by_class.items()]
    except AttributeError:
        raise ConfigError(f"{where}: expected samples as {{k: {{sample: {{class: {{...}}}}}}}}") from None
    for k, s, name, entry in entries:
        if name not in classes:
            raise ConfigError(f"{where}: unknown class '{name}' at k={k} sample {s}")
        c = classes.index(name)
        for key, want in (("positives", 1), ("negatives", -1)):
            rows = np.asarray(entry.get(key, []) if isinstance(entry, dict) else [])
            ok = (rows.ndim == 1 and rows.size > 0 and np.issubdtype(rows.dtype, np.integer)
                  and rows.min() >= 0 and rows.max() < len(labels) and np.unique(rows).size == rows.size)
            if not ok or not np.all(labels[rows, c] == want):
                raise ConfigError(f"{where}: k={k} sample {s} class '{name}': {key} must be distinct "
                                  f"trainval rows labelled {want}")
    return stored


# --------------------------------------------------------------------------------------------
# The two suites
# --------------------------------------------------------------------------------------------

def _check_costs(costs: Sequence[float]) -> tuple[float, ...]:
    costs = tuple(sorted(float(c) for c in costs))
    if not costs or not all(math.isfinite(c) and c > 0 for c in costs) or len(set(costs)) != len(costs):
        raise ConfigError(f"costs: expected distinct positive numbers, got {list(costs)}")
    return costs


def fallback_cost_index(costs: Sequence[float]) -> int:
    """The listed cost nearest (in log scale) to LIBLINEAR's default C = 1."""
    return int(np.argmin([abs(math.log(c / DEFAULT_COST)) for c in costs]))


def run_full(data: SvmData, costs: Sequence[float] = DEFAULT_COSTS, seed: int = 0,
             n_jobs: int | None = None, folds: int = CV_FOLDS, project: bool = True,
             progress: bool = False) -> dict:
    """Full-set suite: per-class cost by CV on trainval, refit on trainval, AP on test."""
    costs = _check_costs(costs)
    rows = np.arange(data.trainval_x.shape[0])
    jobs = [ClassJob(c, rows, data.trainval_y[:, c],
                     _folds_or_none(data.trainval_y[:, c], folds, np.random.default_rng([seed, c, 2])),
                     costs, refit_all=False, fallback=fallback_cost_index(costs))
            for c in range(len(data.classes))]
    results = run_jobs(data.trainval_x, data.test_x, data.test_y, jobs, n_jobs, project, progress, desc="svm full")
    ap = {name: float(r["test_ap"][r["chosen"]]) for name, r in zip(data.classes, results)}
    return {"map": float(np.mean(list(ap.values()))), "ap": ap,
            "cost": {name: costs[r["chosen"]] for name, r in zip(data.classes, results)},
            "cv_ap": {name: None if r["cv_ap"] is None else r["cv_ap"].tolist()
                      for name, r in zip(data.classes, results)}}


def _mean_std(values: list[float]) -> dict:
    return {"mean": float(np.mean(values)), "std": float(np.std(values)), "per_sample": [float(v) for v in values]}


def lowshot_choices(test_ap: np.ndarray, cv_chosen: list[list[int]], costs: Sequence[float]) -> dict:
    """The three cost rules on one k's test APs (samples, classes, costs); see the module docstring.
    Returns {mode: {"mean", "std", "per_sample", "costs"}}."""
    samples, classes = test_ap.shape[:2]
    map_per_cost = test_ap.mean(axis=1)  # (samples, costs)
    ref = best_cost_index(map_per_cost.mean(axis=0))  # one cost for every sample of this k
    best = [best_cost_index(row) for row in map_per_cost]
    cv = [float(np.mean(test_ap[s, np.arange(classes), cv_chosen[s]])) for s in range(samples)]
    return {
        "reference": {**_mean_std(list(map_per_cost[:, ref])), "costs": costs[ref]},
        "cv": {**_mean_std(cv), "costs": [[costs[j] for j in row] for row in cv_chosen]},
        "best_test": {**_mean_std([float(map_per_cost[s, b]) for s, b in enumerate(best)]),
                      "costs": [costs[b] for b in best]},
    }


def run_lowshot(data: SvmData, costs: Sequence[float] = DEFAULT_COSTS, ks: Sequence[int] = DEFAULT_KS,
                n_samples: int = DEFAULT_SAMPLES, seed: int = 0, samples_path: str | Path | None = None,
                n_jobs: int | None = None, modes: Sequence[str] = LOWSHOT_MODES,
                folds: int = CV_FOLDS, project: bool = True, progress: bool = False) -> dict:
    """Low-shot suite: {"table": {k: {mode: {"mean", "std", "per_sample", "costs"}}}, "short": [...]}."""
    costs = _check_costs(costs)
    ks = tuple(int(k) for k in ks)
    if not ks or min(ks) < 1 or len(set(ks)) != len(ks) or n_samples < 1:
        raise ConfigError(f"low-shot: expected distinct k >= 1 and samples >= 1, got ks={list(ks)} samples={n_samples}")
    if not modes or not set(modes) <= set(LOWSHOT_MODES):
        raise ConfigError(f"low-shot modes: expected a subset of {list(LOWSHOT_MODES)}, got {list(modes)}")
    samples = lowshot_samples(data.trainval_y, data.classes, ks, n_samples, seed, samples_path)
    keys = sorted(samples)
    jobs = []
    for k, s, c in keys:
        pos, neg = samples[(k, s, c)]
        labels = np.r_[np.ones(len(pos), np.int8), -np.ones(len(neg), np.int8)]
        fold_ids = (_folds_or_none(labels, folds, np.random.default_rng([seed, s, k, c, 1]))
                    if "cv" in modes else None)
        jobs.append(ClassJob(c, np.r_[pos, neg], labels, fold_ids, costs, refit_all=True,
                             fallback=fallback_cost_index(costs)))
    results = dict(zip(keys, run_jobs(data.trainval_x, data.test_x, data.test_y, jobs, n_jobs, project, progress,
                                      desc="svm low-shot")))

    num_classes = len(data.classes)
    table = {}
    for k in ks:
        test_ap = np.stack([np.stack([results[(k, s, c)]["test_ap"] for c in range(num_classes)])
                            for s in range(n_samples)])  # (samples, classes, costs)
        chosen = [[results[(k, s, c)]["chosen"] for c in range(num_classes)] for s in range(n_samples)]
        per_mode = lowshot_choices(test_ap, chosen, costs)
        table[str(k)] = {mode: per_mode[mode] for mode in LOWSHOT_MODES if mode in modes}
    short = [{"k": k, "sample": s, "class": data.classes[c], "positives": len(samples[(k, s, c)][0]),
              "negatives": len(samples[(k, s, c)][1])}
             for k, s, c in keys
             if len(samples[(k, s, c)][0]) < k or len(samples[(k, s, c)][1]) < NEG_PER_POS * k]
    return {"table": table, "short": short}


# --------------------------------------------------------------------------------------------
# CLI
# --------------------------------------------------------------------------------------------

def _number_list(text: str, kind=float) -> list:
    try:
        return [kind(item) for item in text.replace(",", " ").split()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a comma-separated list of numbers, got {text!r}") from None


def build_parser() -> argparse.ArgumentParser:
    parser = ArgumentParser(prog="python -m eval.svm", description="VOC07 SVM suite: full set and low-shot.")
    parser.add_argument("--features", required=True, help="torch file {'trainval': {...}, 'test': {...}}")
    parser.add_argument("--out", required=True, help="output folder (metrics.json)")
    parser.add_argument("--mode", choices=("full", "lowshot", "both"), default="both")
    parser.add_argument("--costs", type=_number_list, nargs="+", default=[list(DEFAULT_COSTS)],
                        help="SVM costs, comma- or space-separated (default: the 11 usual ones)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--samples", type=positive_int, default=DEFAULT_SAMPLES, help="low-shot samples per k")
    parser.add_argument("--ks", type=lambda t: _number_list(t, int), nargs="+", default=[list(DEFAULT_KS)],
                        help="low-shot k values, comma- or space-separated (default 1,2,4,...,96)")
    parser.add_argument("--samples-file", default=None,
                        help="low-shot sample lists (JSON), reused when present (default OUT/lowshot_samples.json)")
    parser.add_argument("--n-jobs", type=positive_int, default=None, help="worker processes (default: all cores)")
    parser.add_argument("--no-project", action="store_true", help="turn off the span trick (same results, slower)")
    parser.add_argument("--progress", action="store_true", help="show progress bars")
    return parser


def run_suite(args: argparse.Namespace) -> dict:
    """Everything the CLI does except printing: returns the metrics dict (already written)."""
    from importlib.metadata import PackageNotFoundError, version

    import torch

    from eval.core.records import write_record

    data = load_features(args.features)
    costs = _check_costs([c for group in args.costs for c in group])
    ks = [k for group in args.ks for k in group]
    n_jobs = default_n_jobs() if args.n_jobs is None else args.n_jobs
    if n_jobs < 1:
        raise ConfigError(f"--n-jobs: expected >= 1, got {n_jobs}")
    out = Path(args.out)
    samples_path = Path(args.samples_file) if args.samples_file else out / "lowshot_samples.json"
    try:
        liblinear_version = version("liblinear-official")
    except PackageNotFoundError:
        liblinear_version = "unknown"
    settings = {
        "features": str(args.features), "mode": args.mode, "costs": list(costs), "seed": args.seed,
        "cv_folds": CV_FOLDS, "ks": ks, "samples": args.samples, "neg_per_pos": NEG_PER_POS,
        "liblinear": f"{LIBLINEAR_OPTIONS} (liblinear-official {liblinear_version}; srand(1) before each fit)",
        "normalize": f"x / (||x||_2 + {NORM_EPS:g})", "cv_fallback_cost": costs[fallback_cost_index(costs)],
        "ties": "smallest cost wins", "std": "population (ddof=0)", "ap": "VOC all-points interpolated, 0 ignored",
        "project": not args.no_project, "n_jobs": n_jobs,
        "num_trainval": int(data.trainval_x.shape[0]), "num_test": int(data.test_x.shape[0]),
        "dim": int(data.trainval_x.shape[1]),
    }
    metrics: dict = {"suite": "voc07_svm", "classes": list(data.classes), "settings": settings, "seconds": {}}
    common = dict(costs=costs, seed=args.seed, n_jobs=n_jobs, project=not args.no_project, progress=args.progress)
    if args.mode in ("full", "both"):
        start = time.perf_counter()
        metrics["full"] = run_full(data, **common)
        metrics["seconds"]["full"] = round(time.perf_counter() - start, 3)
    if args.mode in ("lowshot", "both"):
        start = time.perf_counter()
        low = run_lowshot(data, ks=ks, n_samples=args.samples, samples_path=samples_path, **common)
        metrics["seconds"]["lowshot"] = round(time.perf_counter() - start, 3)
        metrics.update(lowshot=low["table"], lowshot_short=low["short"], lowshot_samples=str(samples_path))
        if low["short"]:
            print(f"warning: {len(low['short'])} low-shot training sets have fewer than k positives or 19k "
                  "negatives (trainval too small); see 'lowshot_short' in metrics.json", file=sys.stderr)
    return write_record(out, metrics, torch.device("cpu"), settings)


@cli_main
def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    metrics = run_suite(args)
    if "full" in metrics:
        print(f"full-set mAP {100 * metrics['full']['map']:.2f}")
    for k, row in metrics.get("lowshot", {}).items():
        print(f"k={k}: " + "  ".join(f"{mode} {100 * r['mean']:.2f} +- {100 * r['std']:.2f}"
                                     for mode, r in row.items()))
    print(f"wrote {Path(args.out) / METRICS}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
