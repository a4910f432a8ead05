"""The GPU check's report: one row per measured stage (images/s, memory, the plain step, the loader
alone and what bounds the run), bf16 against fp32, the quantizing layers' check, and the projected
GPU-hours of every paper table (bench/gpu_cost.py), as Markdown; and the merge of saved runs.
"""
from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

from bench.gpu_cost import Result, project

SPARE_CORES = 2  # left to the training process and its pin-memory thread; the loader workers get the rest


LOADER_BOUND = 0.85  # a run at this share of its loader's own rate waits for its input


def bound_by(r: Result) -> str:
    feed = (r.extra.get("loader") or {}).get("images_per_s")
    if not (feed and r.images_per_s):
        return "-"
    return "loader" if r.images_per_s >= LOADER_BOUND * feed else "step"


def fmt(x: float | None, digits: int = 1) -> str:
    return "-" if x is None else f"{x:,.{digits}f}"


def render(results: list[Result], projection: list[dict], quant: dict | None, machine: dict) -> str:
    s = SimpleNamespace(**machine["settings"])
    lines = [f"# GPU check: {machine['device']}", "",
             f"Measured by `python bench/gpu.py` on {machine['date']}: torch {machine['torch']}, "
             f"CUDA {machine['cuda']}, {machine['cpus']} CPU cores, Python {machine['python']}; "
             f"{s.steps} steps per pretraining run, batch at most {s.batch} per GPU, {s.workers} loader workers, "
             "generated inputs (bench/gpu.py says how).", ""]
    if s.tiny:
        lines += ["**No GPU was found: tiny settings on the CPU. These figures check the script, not a GPU.**", ""]
    merged = any(r.source for r in results)
    lines += ["| stage | what | batch | precision | images/s | peak GPU memory (GiB) | plain step images/s | ours / plain | "
              "loader alone images/s | per worker | bound by | status |" + (" run |" if merged else ""),
              "| --- " * (13 if merged else 12) + "|"]
    for r in results:
        ratio = r.images_per_s / r.reference if r.images_per_s and r.reference else None
        feed = r.extra.get("loader") or {}
        status = r.status + (f" ({r.note})" if r.note else "")
        lines.append(f"| {r.stage} | {r.what} | {r.batch} | {r.precision} | {fmt(r.images_per_s)} | "
                     f"{fmt(r.peak_gib, 2)} | {fmt(r.reference)} | {fmt(ratio, 2)} | {fmt(feed.get('images_per_s'))} | "
                     f"{fmt(feed.get('per_worker'))} | {bound_by(r)} | {status} |" + (f" {r.source} |" if merged else ""))
    lines += ["", "Plain step: the same network and batch, one linear head, cross-entropy and SGD on random tensors "
              "already on the GPU (no input pipeline, no SSL heads), per image of the pretraining batch (two views). "
              "The ratio is what the input pipeline and the method's extra forwards leave of the bare network's speed.",
              "", f"Loader alone: the stage's own loader (the engine's, bench/feed.py) with {s.workers} workers "
              f"(the machine's {machine['cpus']} cores but {SPARE_CORES}) and no step, over one epoch of the generated "
              "folder after the workers' first round; the folder holds at least 4 batches per worker. A run is "
              f"bound by the loader when it reaches {LOADER_BOUND:.0%} of the loader's rate, by the step otherwise.", ""]
    bf = [(a, b) for a in results for b in results
          if a.stage == b.stage and a.source == b.source and a.precision == "bf16" and b.precision == "fp32"
          and a.images_per_s and b.images_per_s]
    if bf:
        lines += ["| stage | bf16 images/s | fp32 images/s | bf16 / fp32 |", "| --- | --- | --- | --- |"]
        lines += [f"| {a.stage} | {fmt(a.images_per_s)} | {fmt(b.images_per_s)} | {a.images_per_s / b.images_per_s:.2f} |"
                  for a, b in bf]
        lines.append("")
    if machine.get("resume"):
        lines += [f"Resuming a finished run from its checkpoint on this device: {machine['resume']}.", ""]
    if quant:
        lines += ["## CQ's quantizing layers under bf16 autocast with TF32 allowed", "",
                  "Relative error of a quantizing 3x3 conv (256 channels) against the same layer in fp32 on the "
                  "CPU: " + ", ".join(f"{b} bits {e:.1e}" for b, e in quant["rel_error"].items())
                  + f" (bf16 rounding alone would give about 4e-3). Forward + backward, batch {quant['batch']} at "
                  "14 px: " + ", ".join(f"{k} {v:.2f} ms" for k, v in quant["ms"].items()) + ".", ""]
    lines += ["## Projected cost of each paper table (one GPU of this kind)", "",
              "Pretraining (epochs x training images x seeds, both stages where two) over the measured images/s, plus "
              "the evaluations the table reads (linear: preset epochs over the training set; fine-tuning: epochs x "
              "labelled images x settings swept; detection: iterations x trials). A run shared by several tables "
              "counts in each. `~` parts are projected from a measured kind; unmeasured parts are left out of the sum.", "",
              "| profile | table | GPU-hours | parts | of them projected (~) | not measured |",
              "| --- | --- | --- | --- | --- | --- |"]
    for row in projection:
        lines.append(f"| {row['profile']} | {row['table']} | {fmt(row['gpu_hours'])} | {row['parts']} | "
                     f"{row['approx']} | {row['unmeasured']} |")
    return "\n".join(lines) + "\n"


def merge_saved(files: list[Path]) -> tuple[dict, list[Result]]:
    """Several saved checks of one kind of machine as one: a later file's (stage, precision)
    replaces an earlier one's; the machine description is the last file's, with every date."""
    machine, merged = {}, {}
    for f in files:
        saved = json.loads(f.read_text())
        merged = {k: r for k, r in merged.items() if not r.status.startswith("not run")}
        for r in saved.pop("results"):
            merged[(r["stage"], r["precision"])] = Result(**{**r, "source": f.stem})
        dates = machine.get("dates", []) + [saved["date"]]
        machine = {**machine, **{k: v for k, v in saved.items() if v is not None}, "dates": dates}
    if len(files) > 1:
        machine["date"] = ", ".join(sorted(set(machine["dates"]))) + f" ({len(files)} runs merged)"
    return machine, list(merged.values())


def report(path: Path, results: list[Result], quant: dict | None, machine: dict) -> str:
    text = render(results, project(results), quant, machine)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.with_suffix(".md").write_text(text)
    return text
