"""The GPU check's cost model: what a full reproduction of each paper table costs on one GPU of the
kind measured (bench/gpu.py measures, bench/gpu_report.py renders).

Each measured time per image is multiplied by the images every run of the two paper profiles
processes (epochs x training-set size, for every seed; BURN and the two-stage baselines twice),
and the runs and evaluations each paper table (or mapped figure) reads are summed; the tables'
reads come from the report mappings through their one reader (reports/mapping.py). Runs of a kind
not measured are projected from the nearest measured kind where the cost ratio is known (`~`),
else left out as not measured.
"""
from __future__ import annotations

import fnmatch
from dataclasses import dataclass, field
from pathlib import Path

from common import runs
from common.config import load_params
from reports import mapping

ROOT = Path(__file__).resolve().parent.parent
# Training-set sizes of the data sets the paper profiles pretrain and evaluate on.
DATASET_IMAGES = {"data/imagenet": 1_281_167, "data/imagenet100": 126_689, "cifar100": 50_000}
PROFILES = {"paper": ROOT / "profiles/paper.yaml", "paper_small_data": ROOT / "profiles/paper_small_data.yaml"}
MAPPINGS = {"paper": ROOT / "reports/mapping/paper.yaml",
            "paper_small_data": ROOT / "reports/mapping/paper_small_data.yaml"}


@dataclass
class Result:
    stage: str
    what: str
    batch: int
    precision: str
    images_per_s: float | None = None
    peak_gib: float | None = None
    reference: float | None = None  # plain PyTorch step, images/s
    status: str = runs.OK
    note: str = ""
    extra: dict = field(default_factory=dict)
    source: str = ""  # the saved file a merged report took it from


@dataclass
class Cost:
    hours: float | None  # None: not measured
    approx: str = ""     # how an unmeasured kind was projected from a measured one ("": measured)


def rate(results: list[Result], stage: str) -> float | None:
    """A stage's measured images/s: the bf16 run where there is one (the paper profiles' setting
    on a GPU), else the fp32 one."""
    done = [r for r in results if r.stage == stage and r.status == runs.OK and r.images_per_s]
    preferred = [r for r in done if r.precision == "bf16"] or done
    return preferred[0].images_per_s if preferred else None


def dataset_images(cfg: dict) -> int | None:
    data = cfg.get("dataset") or {}
    return DATASET_IMAGES.get(data.get("root") or data.get("name"))


def train_of(cfg: dict, method: str) -> dict:
    return {**cfg["train"], **((cfg.get("train_by_method") or {}).get(method) or {})}


def cq_rate(results: list[Result], prefix: str, variant: str, backbone: str) -> tuple[float | None, str]:
    """images/s of a CQ run (`prefix`: cq_pretrain at 224 px, cq_small at 32 px), and how it was
    projected where not measured: CQ-Quant costs what CQ-A costs and CQ-B what CQ-C costs (the
    same forwards per image; on the CPU, SimCLR / CQ-A / CQ-Quant 139 / 145 / 142 images/s, CQ-B /
    CQ-C 67 / 65); another backbone by the measured CQ-C ratio of the two backbones; CQ-A at 32 px
    by the CQ-A / SimCLR ratio measured at 224 px."""
    kind = {"cq_quant": "cq_a", "cq_b": "cq_c"}.get(variant, variant)
    note = f"~ {kind}" if kind != variant else ""
    own = rate(results, f"{prefix}/{kind}/{backbone}")
    if own:
        return own, note
    base, c18, cbb = (rate(results, f"{prefix}/{kind}/resnet18"), rate(results, f"{prefix}/cq_c/resnet18"),
                      rate(results, f"{prefix}/cq_c/{backbone}"))
    if base and c18 and cbb:
        return base * cbb / c18, f"~ {kind} ResNet-18 x the CQ-C {backbone} / ResNet-18 ratio"
    plain, a224, p224 = (rate(results, f"{prefix}/baseline/{backbone}"), rate(results, "cq_pretrain/cq_a/resnet18"),
                         rate(results, "cq_pretrain/baseline/resnet18"))
    if kind == "cq_a" and plain and a224 and p224:
        return plain * a224 / p224, "~ SimCLR x the CQ-A / SimCLR ratio at 224 px"
    return None, note


def pretraining_cost(results: list[Result], params: dict, key: str) -> Cost:
    """GPU-hours of one pretraining run (every seed) on one GPU at the measured per-GPU batch."""
    section, name, _ = runs.parse_key(key)
    cfg = params[section]
    seeds = len(runs.key_seeds(key, params)) if section == "burn" else len(runs.profile_seeds(params))
    n = dataset_images(cfg)
    if section == "cq":
        parts = runs.cq_run_parts(name)
        if parts is None:  # the untrained network
            return Cost(0.0)
        method, variant, backbone = parts
        prefix = "cq_pretrain" if cfg["dataset"]["name"] == "imagefolder" else "cq_small"
        ips, note = cq_rate(results, prefix, variant, backbone) if method == "simclr" else (None, "")
        epochs = train_of(cfg, method).get("epochs")
    else:
        kind, what = runs.burn_run_kind(name)
        if kind == "random_init":
            return Cost(0.0)
        if kind == "teacher":
            return Cost(0.0, "imported file") if (cfg.get("teacher") or {}).get("file") else Cost(None)
        if kind in ("baseline", "appendix"):
            method, _, backbone = runs.appendix_parts(what) if kind == "appendix" else (what, None, cfg.get("student"))
            stages = 2 if method in runs.two_stage(cfg) else 1
            own = rate(results, f"burn_baseline/{method}")  # measured over both stages' steps
            ips, note = (own, "") if own else (rate(results, "burn_stage2"), "~ BURN stage 2")
            if backbone != cfg.get("student"):  # an FP network of Appendix B.1: the binary network's rate
                note = "~ ReActNet-A rate"
            train = train_of(cfg, method)
            if kind == "appendix":
                train.update((cfg.get("appendix") or {}).get("train") or {})
            epochs = train.get("epochs") * stages
        else:  # stage1 / stage2 of a BURN configuration
            ips, note, epochs = rate(results, f"burn_{kind}"), "", train_of(cfg, "burn").get("epochs")
    if not (ips and n and epochs):
        return Cost(None, note)
    return Cost(seeds * epochs * n / ips / 3600, note)


def eval_cost(results: list[Result], params: dict, suite: str, variant: str | None, run_key: str) -> Cost:
    """GPU-hours of one suite (one variant) on one checkpoint, from the measured ResNet-18 rates."""
    from eval.presets import FINETUNE_PRESETS, LINEAR_PRESETS
    from eval.detection_config import make_config, profile_settings

    spec = params["eval"]["suites"].get(suite) or {}
    args = {**(spec.get("args") or {}), **(((spec.get("variants") or {}).get(variant)) or {})}
    n = DATASET_IMAGES.get(args.get("root")) if args.get("dataset") == "imagefolder" else None  # 224 px rates
    approx = "~ ResNet-18 rate" if not run_key.split("/", 1)[1].endswith(("resnet18",)) else ""
    cli = spec.get("cli")
    if cli == "eval.linear" and n:
        ips = rate(results, "eval/linear")
        return Cost(LINEAR_PRESETS[args["preset"]].epochs * n / ips / 3600 if ips else None, approx)
    if cli == "eval.finetune" and n:
        ips = rate(results, "eval/finetune")
        preset = FINETUNE_PRESETS[args["preset"]]
        frac = float(args.get("fraction", 0.1))
        work = preset.epochs_for(frac) * frac * n * len(preset.grid())
        return Cost(work / ips / 3600 if ips else None, approx)
    if cli == "eval.detection":
        its = rate(results, "eval/detection")
        cfg = make_config(profile_settings(params))  # the paper profiles: the reference protocol
        trials = int(args.get("trials", cfg.trials))
        return Cost(cfg.iterations * trials / its / 3600 if its else None, approx)
    return Cost(None)


def table_parts(report: dict, keys: list[str]) -> dict[str, tuple[set, set]]:
    """table (or mapped figure) -> (pretraining run keys it reads, (suite, variant, run key)
    evaluations it reads), walked by the mappings' one reader (reports/mapping.py)."""
    out = {}
    specs = [(table, mapping.table_runs(table, spec)) for table, spec in (report.get("tables") or {}).items()]
    specs += [(name, mapping.figure_runs(name, spec)) for name, spec in (report.get("figures") or {}).items()]
    for table, pairs in specs:
        run_keys, evals = set(), set()
        for pattern, source in pairs:
            matched = fnmatch.filter(keys, pattern)
            if pattern.endswith("@*"):  # every precision set, the profile's own included
                matched += [k for k in keys if k == pattern[:-2]]
            for key in matched:
                run_keys.add(key)
                section, name, _ = runs.parse_key(key)
                if section == "burn" and runs.burn_run_kind(name)[0] == "stage2":  # and the stage 1 it starts from
                    run_keys.add(f"{section}/{runs.burn_stage_name(runs.burn_run_kind(name)[1], 1)}")
                evals.add((source["suite"], source["variant"] or None, key))
        out[table] = (run_keys, evals)
    return out


def project(results: list[Result]) -> list[dict]:
    rows = []
    for profile, path in PROFILES.items():
        params = load_params(path)
        keys = runs.pretraining_keys(params)
        for table, (run_keys, evals) in table_parts(mapping.read_mapping(MAPPINGS[profile]), keys).items():
            costs = [pretraining_cost(results, params, k) for k in sorted(run_keys)]
            costs += [eval_cost(results, params, s, v, k) for s, v, k in sorted(evals, key=str)]
            known = [c.hours for c in costs if c.hours is not None]
            rows.append({"profile": profile, "table": table, "gpu_hours": sum(known),
                         "parts": len(costs), "unmeasured": sum(c.hours is None for c in costs),
                         "approx": sum(bool(c.approx) and c.hours is not None for c in costs)})
    return rows
