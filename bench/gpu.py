"""GPU check: the first steps of every paper-profile stage on one GPU, through the real CLIs, and
what a full reproduction of each paper table would cost.

Each stage runs as its pipeline runs it (`python -m cq.pretrain ...`, `python -m burn.pretrain
...`, `python -m eval.linear ...`) with the check's own profiles, profiles/paper_gpu_check.yaml and
paper_small_data_gpu_check.yaml, which extend the paper profiles: the runs are a few steps long
and write no checkpoints, and CIFAR-100 is generated 32 px tensors. At run time the check adds
(`check_overrides`) what is its own: a generated folder of JPEGs at ImageNet-like sizes as the
ImageNet data, the batch on the one GPU (at most `--batch`), the loader's workers, and the BURN
teacher, a randomly initialised torchvision ResNet-50 file (the released MoCo v2 weights are not
needed to time it); detection trains on generated boxes. Measured per stage: images/s (pretraining: the engine's own count over
the last third of the run's steps, when the loader's prefetched batches are long used up;
evaluation: one training epoch as the suite counts it, start-up left out), peak GPU memory, bf16
autocast against fp32, a plain PyTorch training step of the same network at the same batch
(random tensors already on the GPU: no input pipeline) as the reference, and the stage's loader
alone (bench/feed.py: the engine's loader with no step), so each row says whether the loader or
the step bounds it.

The feed is measured, not the folder: the loader gets a worker per core but two (the training
process and its pin-memory thread keep those), and the generated folder holds at least 4 batches
per worker (16 cores: 14 workers x 256 x 4 = 14,336 JPEGs, written once by every core and reused
with --images). A folder of fewer batches than workers leaves workers idle: a worker builds whole
batches, so the 3 batches an epoch of an earlier check's 1,000 images kept 3 of its 8 workers busy.

The projection (bench/gpu_cost.py; the report is bench/gpu_report.py's) multiplies each measured
time per image by the images every run of the two paper profiles processes (epochs x
training-set size, for every seed; BURN and the two-stage baselines twice) and sums the runs and
evaluations each paper table reads (reports/mapping/paper*.yaml, through reports/mapping.py).
Runs of a kind not measured here are projected from the nearest measured kind where the cost
ratio is known (said in the table, `~`), else listed as not measured.

    python bench/gpu.py [--out reports/gpu] [--steps 90] [--batch 256] [--images DIR]   (make gpu-check)

Without CUDA it runs the same code paths on the CPU with tiny settings (`--tiny`, implied), says
that no GPU was found, and writes its report under the --out folder as cpu-tiny.md (what a test
checks). Targets: every stage runs to completion; CQ's quantizing layers stay exact under bf16; a
finished run resumes; and, where CUDA is present, SimCLR ResNet-18, CQ-C ResNet-18 and BURN stage 1
each keep >= 0.7 of the plain step's images/s with their real input.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402

from bench.feed import FeedRate, folder_images, loader_alone  # noqa: E402
from bench.gpu_cost import Result  # noqa: E402
from bench.gpu_report import SPARE_CORES, fmt, merge_saved, report  # noqa: E402
from bench.jpegs import write_folder  # noqa: E402
from common import runs  # noqa: E402
from common.config import dump_params, load_params  # noqa: E402


@dataclass
class Settings:
    tiny: bool
    steps: int
    batch: int
    workers: int
    image: int          # side of the generated JPEGs' short edge
    per_class: int      # generated images per class (10 classes)
    timeout: int


def settings(tiny: bool, steps: int, batch: int, cores: int | None = None) -> Settings:
    """The check's settings. On a GPU: a loader worker per core but SPARE_CORES, and a folder
    that gives every worker at least 4 batches an epoch (bench/feed.py `folder_images`), so no
    worker waits for an epoch to end (run4's folder of 1,000 images made 3 batches of 256)."""
    if tiny:
        return Settings(True, 2, 8, 0, 48, 4, 600)
    workers = max(1, (cores or os.cpu_count() or 1) - SPARE_CORES)
    per_class = -(-folder_images(workers, batch) // 10)
    return Settings(False, steps, batch, workers, 375, per_class, 300)


# --------------------------------------------------------------------------------------------
# Generated inputs
# --------------------------------------------------------------------------------------------

def make_folder(root: Path, s: Settings, classes: int = 10) -> Path:
    """An image folder (<split>/<class>/<image>.jpg), 4:3 pictures s.image px high (bench/jpegs.py),
    written by every core and reused by a later check with the same --images folder."""
    return write_folder(root, {"train": s.per_class, "val": max(2, min(s.per_class // 4, 100))}, s.image,
                        s.image * 4 // 3, classes, jobs=os.cpu_count() or 1)


def teacher_file(path: Path) -> Path:
    """A torchvision ResNet-50 state dict (random weights) in place of MoCo v2's released file."""
    import torchvision

    torch.manual_seed(0)
    torch.save(torchvision.models.resnet50().state_dict(), path)
    return path


# --------------------------------------------------------------------------------------------
# Parameter files: the check's profiles (profiles/paper*_gpu_check.yaml) and what is given at run time
# --------------------------------------------------------------------------------------------

CHECK_PROFILES = {"paper": ROOT / "profiles/paper_gpu_check.yaml",
                  "paper_small_data": ROOT / "profiles/paper_small_data_gpu_check.yaml"}
TINY_SIZE = 32  # --tiny: every view at 32 px, ReActNet-A narrow with its small-image stem


def check_overrides(params: dict, s: Settings, folder: Path, teacher: Path) -> list[str]:
    """What the check gives its profile at run time (`key=value`, as on a CLI): the generated
    folder as every image-folder data set, the steps, the batch (at most --batch: the profile's
    own where it is smaller), the workers, the teacher file; --tiny shrinks images and networks."""
    over = [f"burn.teacher.file={teacher}", "cq.bn_reestimation.batches=2"]
    for sec in ("cq", "burn"):
        cfg = params[sec]
        if cfg["dataset"]["name"] == "imagefolder":
            over += [f"{sec}.dataset.root={folder}", f"{sec}.dataset.options.load_size={64 if s.tiny else 256}"]
        elif s.tiny:
            over.append(f"{sec}.dataset.options.num_images=64")
        over += [f"{sec}.train.steps={s.steps}", f"{sec}.train.log_every={max(1, s.steps // 3)}",
                 f"{sec}.train.num_workers={s.workers}",
                 f"{sec}.train.batch_size={min(cfg['train']['batch_size'], s.batch)}"]
        over += [f"{sec}.train_by_method.{method}.batch_size={s.batch}"
                 for method, by in (cfg.get("train_by_method") or {}).items() if (by or {}).get("batch_size", 0) > s.batch]
        if s.tiny:
            over += [f"{sec}.views.{name}.out_size={TINY_SIZE}"
                     for name, views in cfg["views"].items() if views.get("out_size", TINY_SIZE) > TINY_SIZE]
    if s.tiny:
        over += ["burn.backbone_options.reactnet_a={width: 0.25, small_images: true, fp_head: false}",
                 "burn.methods.burn.classifier_dim=10"]
    return over


def check_params(profile: str, s: Settings, folder: Path, teacher: Path) -> dict:
    """The parameters one paper profile's stages run with in the check."""
    params = load_params(CHECK_PROFILES[profile])
    return load_params(CHECK_PROFILES[profile], check_overrides(params, s, folder, teacher))


# --------------------------------------------------------------------------------------------
# Stages
# --------------------------------------------------------------------------------------------

def stage_feed(params: dict, section: str, variant: str, s: Settings, device: torch.device,
               backbone: str = "resnet18") -> dict:
    """The stage's loader alone (bench/feed.py): its data set, the view slots its method crops,
    the check's workers and the stage's batch, as the engine builds it on this device."""
    from common.data import build_dataset

    cfg = params[section]
    data = cfg["dataset"]
    dataset = build_dataset(data["name"], data.get("root"), data.get("split", "train"), **data.get("options", {}))
    if section == "cq":
        from cq.pretrain import build_cq

        views = build_cq(params, "simclr", variant, backbone).view_slots()
    else:
        from burn.pretrain import method_kwargs, views_for

        pipes = views_for(cfg, "burn")
        views = [pipes[0]] if method_kwargs(cfg, "burn", variant)[1].get("pairing", "same") == "same" else list(pipes)
    # on_device: with the folder's GPU decoding (the default on CUDA) the feed ends on the device
    rate: FeedRate = loader_alone(dataset, views, cfg["train"]["batch_size"], s.workers, device.type, on_device=True)
    return {"images_per_s": rate.images_per_s, "per_worker": rate.per_worker, "workers": rate.workers,
            "batches": rate.batches, "epoch_batches": rate.epoch_batches, "slots": len(views)}


def call(args: list[str], log: Path, timeout: int) -> str:
    """Run one CLI (`python -m ...`); returns "ok" or the reason it did not finish."""
    path = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))
    env = {**os.environ, "PYTHONPATH": path, "PYTHONUNBUFFERED": "1"}
    with log.open("a") as fh:
        fh.write("$ " + " ".join(args) + "\n")
        fh.flush()
        try:
            rc = subprocess.run([sys.executable, *args], cwd=ROOT, env=env, stdout=fh, stderr=subprocess.STDOUT,
                                timeout=timeout).returncode
        except subprocess.TimeoutExpired:
            return f"timed out after {timeout} s"
    return runs.OK if rc == 0 else f"exit code {rc} (log: {log.name})"


def last_lines(log: Path, n: int = 3) -> str:
    lines = [line for line in log.read_text().splitlines() if line.strip()]
    return " / ".join(lines[-n:])[-300:]


def pretrain(work: Path, params_file: Path, module: str, args: list[str], amp: str, section: str,
             s: Settings, log: Path) -> dict:
    out = work / ("run-" + "-".join(a.strip("-") for a in args if not a.startswith("/"))[:80] + f"-{amp}")
    shutil.rmtree(out, ignore_errors=True)  # a fresh run: a finished one would only be resumed
    status = call(["-m", module, *args, "--out", str(out), "--params", str(params_file),
                   f"{section}.train.amp={amp}"], log, s.timeout)
    metrics = runs.read_metrics(out / runs.METRICS) or {}
    return {"status": status, "out": out, "images_per_s": metrics.get("images_per_s"),
            "peak_gib": metrics.get("peak_memory_gib")}


def reference_step(backbone: str, options: dict, batch: int, size: int, device: torch.device,
                   bf16: bool, steps: int) -> float:
    """images/s of a plain training step: the network, a linear head, cross-entropy, SGD, on random
    tensors already on the device (channels_last and bf16 autocast on a GPU, as the engine)."""
    from common.backbones import build_backbone

    torch.manual_seed(0)
    net = build_backbone(backbone, **options)
    head = torch.nn.LazyLinear(1000)
    model = torch.nn.Sequential(net, torch.nn.Flatten(), head).to(device)
    x = torch.randn(batch, 3, size, size, device=device)
    with torch.no_grad():
        model(x[:2])  # sizes the lazy head
    if device.type == "cuda":
        model, x = model.to(memory_format=torch.channels_last), x.to(memory_format=torch.channels_last)
    y = torch.randint(0, 1000, (batch,), device=device)
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)

    def step():
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
            loss = torch.nn.functional.cross_entropy(model(x).float(), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    for _ in range(2):
        step()
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    sync()
    start = time.perf_counter()
    for _ in range(steps):
        step()
    sync()
    return batch * steps / (time.perf_counter() - start)


def eval_epoch(module: str, args: list[str], work: Path, name: str, s: Settings, log: Path
               ) -> tuple[str, float | None]:
    """images/s of one training epoch of an evaluation, as the suite measures its own training loop
    (`train_images_per_s`: the input pipeline included, start-up and testing left out)."""
    out = work / name
    status = call(["-m", module, *args, "--epochs", "1", "--out", str(out)], log, s.timeout)
    metrics = runs.read_metrics(out / runs.METRICS) or {}
    return status, (metrics.get("best") or metrics).get("train_images_per_s")


# --------------------------------------------------------------------------------------------
# The run of the check
# --------------------------------------------------------------------------------------------

class Recorder(list):
    """The results so far, written with the machine's description to a JSON file after each stage:
    a check killed at its time limit still leaves what it measured (`--from-json` renders it)."""

    def __init__(self, path: Path, machine: dict):
        super().__init__()
        self.path, self.machine = path, machine

    def add(self, result: Result) -> None:
        self.append(result)
        self.save()
        print(f"[gpu check] {result.stage} ({result.precision}): {fmt(result.images_per_s)} images/s, "
              f"{result.status}", flush=True)

    def save(self) -> None:
        self.path.write_text(json.dumps({**self.machine, "results": [r.__dict__ for r in self]}, indent=1))


def precision_name(amp: str) -> str:
    return "bf16" if amp == "bf16" else "fp32"


def measure_cq(rec: Recorder, work: Path, s: Settings, device: torch.device, log: Path, profile: str,
               params: dict, plan: list[tuple[str, str, tuple[str, ...]]]) -> Path | None:
    """CQ pretraining runs (SimCLR base) of one paper profile; the SimCLR ResNet-18 encoder."""
    pfile = work / f"params-{profile}.yaml"
    pfile.write_text(dump_params(params))
    size = params["cq"]["views"]["simclr"]["out_size"]
    batch = params["cq"]["train"]["batch_size"]
    prefix = "cq_pretrain" if profile == "paper" else "cq_small"
    encoder = None
    for variant, backbone, amps in plan:
        options = (params["cq"].get("backbone_options") or {}).get(backbone) or {}
        feed = stage_feed(params, "cq", variant, s, device, backbone)  # the same loader for every precision
        for amp in amps:
            r = pretrain(work / profile, pfile, "cq.pretrain", ["--method", "simclr", "--variant", variant,
                                                                 "--backbone", backbone], amp, "cq", s, log)
            ref = reference_step(backbone, options, batch * 2, size, device, amp == "bf16", max(2, s.steps // 3)) / 2
            rec.add(Result(f"{prefix}/{variant}/{backbone}", f"CQ {variant} (SimCLR), {backbone}, {size} px, {profile}",
                           batch, precision_name(amp), r["images_per_s"], r["peak_gib"], ref, r["status"],
                           extra={"loader": feed}))
            if variant == "baseline" and r["status"] == runs.OK:
                encoder = r["out"] / runs.ENCODER
    return encoder


def measure_burn(rec: Recorder, work: Path, s: Settings, device: torch.device, log: Path, params: dict,
                 amps: tuple[str, ...], only_stage1: bool = False) -> None:
    """BURN stages 1 and 2 (ReActNet-A, ResNet-50 teacher imported from a file) and the tuned MoCo v2
    baseline (both of S2-BNN's stages)."""
    pfile = work / "params-paper.yaml"
    teacher = work / "teacher"
    imported = call(["-m", "burn.pretrain", "--method", "mocov2", "--backbone", "resnet50", "--as-teacher",
                     "--out", str(teacher), "--params", str(pfile)], log, s.timeout)
    batch = params["burn"]["train"]["batch_size"]
    size = params["burn"]["views"]["burn"]["out_size"]
    options = params["burn"]["backbone_options"]["reactnet_a"]
    stage1 = None
    feed = stage_feed(params, "burn", "burn", s, device)  # both stages read the same data and views
    for stage, modes in ((1, amps[:1]),) if only_stage1 else ((1, amps), (2, amps[:1])):
        for amp in modes:
            args = ["--method", "burn", "--variant", "burn", "--backbone", "reactnet_a", "--stage", str(stage),
                    "--teacher", str(teacher)] + (["--init", str(stage1)] if stage == 2 else [])
            if imported != runs.OK or (stage == 2 and stage1 is None):
                r = {"status": f"not run: teacher import {imported}" if imported != runs.OK else "not run: no stage 1",
                     "images_per_s": None, "peak_gib": None}
            else:
                r = pretrain(work / "burn", pfile, "burn.pretrain", args, amp, "burn", s, log)
            if stage == 1 and amp == amps[0] and r["status"] == runs.OK:
                stage1 = r["out"]
            ref = reference_step("reactnet_a", options, batch * 2, size, device, amp == "bf16", max(2, s.steps // 3)) / 2
            rec.add(Result(f"burn_stage{stage}", f"BURN stage {stage}, ReActNet-A + ResNet-50 teacher, {size} px",
                           batch, precision_name(amp), r["images_per_s"], r["peak_gib"], ref, r["status"],
                           extra={"loader": feed}))
    if only_stage1:
        return
    r = pretrain(work / "burn", pfile, "burn.pretrain", ["--method", "mocov2_tuned", "--backbone", "reactnet_a"],
                 amps[0], "burn", s, log)
    rec.add(Result("burn_baseline/mocov2_tuned", f"tuned MoCo v2 (both stages), ReActNet-A, {size} px", batch,
                   precision_name(amps[0]), r["images_per_s"], r["peak_gib"], None, r["status"],
                   "images/s of the second stage"))


def measure_eval(rec: Recorder, work: Path, s: Settings, log: Path, folder: Path, size: int,
                 encoder: Path | None) -> None:
    """Linear evaluation (augmented), fine-tuning (10 %) and detection on the ResNet-18 encoder,
    with the paper presets."""
    if encoder is None:
        rec.add(Result("eval", "evaluation suites", 0, "-", status="not run: no ResNet-18 encoder"))
        return
    batch = min(512, s.batch * 2)
    data = ["--encoder", str(encoder), "--dataset", "imagefolder", "--root", str(folder), "--train-split", "train",
            "--test-split", "val", "--image-size", str(size), "--device", "auto", "--batch-size", str(batch)]
    data += ["--workers", str(s.workers)]
    status, ips = eval_epoch("eval.linear", [*data, "--preset", "cq_imagenet", "--mode", "augment"], work,
                             "linear", s, log)
    rec.add(Result("eval/linear", "linear evaluation (augmented), ResNet-18, preset cq_imagenet", batch, "fp32",
                   ips, None, None, status, "images/s of one training epoch"))
    status, ips = eval_epoch("eval.finetune", [*data, "--preset", "cq_imagenet", "--fraction", "0.1"], work,
                             "finetune", s, log)
    rec.add(Result("eval/finetune", "semi-supervised fine-tuning (10 %), ResNet-18, preset cq_imagenet", batch,
                   "fp32", ips, None, None, status, "labelled images/s of one epoch"))
    rec.add(detection(work, encoder, s, log))


def quantizer_check(device: torch.device, steps: int = 20) -> dict:
    """CQ's quantizing layers under the GPU run's settings (bf16 autocast on, TF32 allowed): outputs
    at 4, 8 (on integer codes, common/quant_codes.py), 12, 14 and 16 bits (true fp32,
    common/quant.py) against the same layer in fp32 on the CPU (relative error), and what that
    costs: ms of a forward + backward of a ResNet-18 res4-sized conv, quantized at 8 bits (codes)
    and 12 bits (true fp32) vs plain under bf16 autocast vs plain fp32."""
    from common.quant import QuantConfig, _tf32_switches, quantize_model

    torch.manual_seed(0)
    plain = torch.nn.Conv2d(256, 256, 3, padding=1, bias=False)
    layer = quantize_model(torch.nn.Sequential(plain), keep_fp=(), config=QuantConfig(mode="floor"))[0]
    layer.eval()
    small = torch.randn(8, 256, 14, 14)
    errors = {}
    switches = _tf32_switches()
    saved = [getattr(obj, name) for obj, name in switches]
    for obj, name in switches:  # TF32 allowed for the rest of the network, as PyTorch's cuDNN default
        setattr(obj, name, {"fp32_precision": "tf32", "allow_tf32": True}[name])
    try:
        for bits in (4, 8, 12, 14, 16):
            layer.bits = bits
            with torch.no_grad():
                want = layer.cpu()(small)
                with torch.autocast(device.type, dtype=torch.bfloat16):
                    got = layer.to(device)(small.to(device)).float().cpu()
            errors[bits] = ((got - want).norm() / want.norm()).item()
        timing = {}
        x = torch.randn(64 if device.type == "cuda" else 4, 256, 14, 14, device=device, requires_grad=True)
        for name, net, bits, bf16 in (("quantized, 8 bits (codes)", layer, 8, True),
                                      ("quantized, 12 bits (true fp32)", layer, 12, True),
                                      ("plain, bf16 autocast", plain, None, True),
                                      ("plain, fp32 (TF32 allowed)", plain, None, False)):
            net.to(device).train()
            layer.bits = bits
            timing[name] = _ms_per_step(net, x, device, bf16, steps)
    finally:
        for (obj, name), value in zip(switches, saved):
            setattr(obj, name, value)
    return {"rel_error": errors, "ms": timing, "batch": x.shape[0]}


def _ms_per_step(net: torch.nn.Module, x: torch.Tensor, device: torch.device, bf16: bool, steps: int) -> float:
    def step():
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
            net(x).float().square().mean().backward()

    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    for _ in range(3):
        step()
    sync()
    start = time.perf_counter()
    for _ in range(steps):
        step()
    sync()
    return 1000 * (time.perf_counter() - start) / steps


PIPELINE_TARGETS = ("cq_pretrain/baseline/resnet18", "cq_pretrain/cq_c/resnet18", "burn_stage1")
PIPELINE_TARGET = 0.7

GROUPS = ("cq", "burn", "eval", "small")  # and burn1: BURN stage 1 in bf16 alone


def resume_check(rec: Recorder, encoder: Path, params_file: Path, log: Path, s: Settings) -> None:
    """The finished SimCLR run started again: it must resume from its checkpoint and stop."""
    run = encoder.parent
    rec.machine["resume"] = call(["-m", "cq.pretrain", "--method", "simclr", "--variant", "baseline", "--backbone",
                                  "resnet18", "--out", str(run), "--params", str(params_file),
                                  f"cq.train.amp={'bf16' if 'bf16' in run.name else 'off'}"], log, s.timeout)
    rec.save()
    print(f"[gpu check] resume of a finished run: {rec.machine['resume']}", flush=True)


def measure(work: Path, s: Settings, device: torch.device, log: Path, rec: Recorder,
            groups: tuple[str, ...] = GROUPS, images: Path | None = None) -> Recorder:
    folder = make_folder(images or work / "images", s)
    teacher = teacher_file(work / "resnet50.pth")
    amps = ("bf16", "off") if device.type == "cuda" else ("off",)
    paper = check_params("paper", s, folder, teacher)
    # CQ on ImageNet (Tables 1-3): SimCLR, CQ-C (bf16 and fp32) and CQ-A on ResNet-18; CQ-C on ResNet-34
    plan = [("baseline", "resnet18", amps[:1])]
    if "cq" in groups:
        plan += [("cq_c", "resnet18", amps), ("cq_a", "resnet18", amps[:1]), ("cq_c", "resnet34", amps[:1])]
    encoder = measure_cq(rec, work, s, device, log, "paper", paper, plan)
    if encoder is not None:
        resume_check(rec, encoder, work / "params-paper.yaml", log, s)
    if "burn" in groups or "burn1" in groups:  # BURN on ImageNet (Tables 1-7)
        measure_burn(rec, work, s, device, log, paper, amps, only_stage1="burn" not in groups)
    if "eval" in groups:
        measure_eval(rec, work, s, log, folder, paper["cq"]["views"]["simclr"]["out_size"], encoder)
    if "small" in groups:  # CQ on CIFAR-100 (Tables 4-9): 32 px images, SimCLR and CQ-C on ResNet-18
        small = check_params("paper_small_data", s, folder, teacher)
        measure_cq(rec, work, s, device, log, "paper_small_data", small,
                   [("baseline", "resnet18", amps[:1]), ("cq_c", "resnet18", amps[:1])])
    return rec


def detection(work: Path, encoder: Path, s: Settings, log: Path) -> Result:
    """Faster R-CNN C4 on generated boxes at the paper's image sizes: iterations/s of training."""
    iters = 4 if s.tiny else 40
    side = 96 if s.tiny else 600
    over = {"dataset": "synthetic_det", "root": None, "iterations": iters, "milestones": [iters], "trials": 1,
            "warmup_iters": 1, "log_every": iters,
            "train_data": [{"split": "train", "options": {"num_images": 32, "image_size": side}}],
            "test_data": {"split": "test", "options": {"num_images": 4, "image_size": side}}}
    if s.tiny:
        over.update(batch_size=2, train_sizes=[96], test_size=96, max_size=128, anchor_sizes=[16, 32, 64],
                    pooler_resolution=8)
    pfile = work / "params-detection.yaml"
    pfile.write_text(dump_params({"profile": "paper"}))  # the paper's detection: the reference protocol
    out = work / "detection"
    status = call(["-m", "eval.detection", "--encoder", str(encoder), "--out", str(out), "--params", str(pfile),
                   "--settings", dump_params(over, flow=True).strip()], log, s.timeout)
    m = runs.read_metrics(out / runs.METRICS) or {}
    trial = (m.get("trials") or [{}])[0]
    ips = iters / trial["train_seconds"] if trial.get("train_seconds") else None
    return Result("eval/detection", f"detection (Faster R-CNN C4), ResNet-18, {side} px", 2 if s.tiny else 16,
                  "fp32", ips, None, None, status,
                  "iterations/s (batch of images per iteration), start-up included")


def device_name(device: torch.device) -> str:
    return torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu-tiny"


def describe(device: torch.device, s: Settings) -> dict:
    return {"device": device_name(device), "date": time.strftime("%Y-%m-%d"), "torch": torch.__version__,
            "cuda": torch.version.cuda, "cpus": os.cpu_count(), "python": platform.python_version(),
            "settings": s.__dict__}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=str(ROOT / "reports/gpu"), help="folder of the report (<device>.md)")
    parser.add_argument("--steps", type=int, default=90,
                        help="steps of each pretraining run (GPU); the rate is the last third's")
    parser.add_argument("--batch", type=int, default=256, help="largest batch on the one GPU")
    parser.add_argument("--tiny", action="store_true", help="tiny settings (implied without CUDA)")
    parser.add_argument("--work", default=None, help="scratch folder (default: a temporary one)")
    parser.add_argument("--images", default=None,
                        help="folder of the generated JPEGs, reused when it holds the right number "
                             "(default: <work>/images)")
    parser.add_argument("--only", default=",".join(GROUPS),
                        help=f"stage groups to run, of {','.join(GROUPS)} (SimCLR ResNet-18 always runs)")
    parser.add_argument("--from-json", nargs="+", default=None,
                        help="render the report of saved <device>.json files (no run) into --out: a later "
                             "file's stage replaces an earlier one's")
    args = parser.parse_args(argv)
    if args.from_json:
        machine, results = merge_saved([Path(f) for f in args.from_json])
        print(report(Path(args.out) / (machine["device"].replace(" ", "_") + ".md"), results, machine.get("quant"),
                     machine))
        return 0
    groups = tuple(g for g in args.only.split(",") if g)
    if set(groups) - set(GROUPS) - {"burn1"}:
        parser.error(f"--only: expected groups of {','.join(GROUPS)}, got {args.only!r}")
    cuda = torch.cuda.is_available()
    if not cuda:
        print("no GPU found (torch.cuda.is_available() is False): running the tiny CPU mode")
    s = settings(args.tiny or not cuda, args.steps, args.batch)
    device = torch.device("cuda" if cuda else "cpu")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    path = out / (device_name(device).replace(" ", "_") + ".json")
    rec = Recorder(path, describe(device, s))
    rec.machine["quant"] = quant = quantizer_check(device, steps=2 if s.tiny else 20)
    print(f"[gpu check] quantizer: {quant}", flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(args.work or tmp)
        work.mkdir(parents=True, exist_ok=True)
        log = work / "gpu-check.log"
        log.touch()
        results = measure(work, s, device, log, rec, groups, Path(args.images) if args.images else None)
        failed = [r for r in results if r.status != runs.OK]
        if failed:
            print(f"stage failures; the end of {log}:\n  {last_lines(log, 8)}")
    print(report(path, results, quant, rec.machine))
    print(f"written: {path.with_suffix('.md')}")
    worst = max(quant["rel_error"].values())
    print(f"TARGET quantizer_exact_under_bf16: {worst:.1e} (target <= 1e-4) {'PASS' if worst <= 1e-4 else 'FAIL'}")
    print(f"TARGET resume_of_a_finished_run: {rec.machine.get('resume')} (target == ok) "
          f"{'PASS' if rec.machine.get('resume') == runs.OK else 'FAIL'}")
    if cuda:  # what the input pipeline and the method leave of a plain step of the same network
        for stage in PIPELINE_TARGETS:
            row = next((r for r in results if r.stage == stage and r.precision == "bf16"), None)
            ratio = row.images_per_s / row.reference if row and row.images_per_s and row.reference else 0.0
            print(f"TARGET pipeline_over_plain_step[{stage}]: {ratio:.2f} (target >= {PIPELINE_TARGET}) "
                  f"{'PASS' if ratio >= PIPELINE_TARGET else 'FAIL'}")
    print(f"TARGET stages_complete: {len(results) - len(failed)}/{len(results)} (target == {len(results)}) "
          f"{'PASS' if not failed else 'FAIL'}")
    return 0 if not failed and worst <= 1e-4 and rec.machine.get("resume") == runs.OK else 1


if __name__ == "__main__":
    raise SystemExit(main())
