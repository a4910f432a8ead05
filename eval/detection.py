"""Detection transfer: Faster R-CNN fine-tuned from the project's backbones on VOC (BURN Table 1,
CQ Table 3; docs/protocols.md sec. 3, "Detection"), evaluated with eval/voc_eval.py.

    python -m eval.detection --encoder runs/x/encoder.pt --out runs/x/detection \\
        [--params profiles/mini.yaml] [--settings '{iterations: 100}'] [--dataset voc_det --root DIR]
        [--trials 5] [key=value ...]

The model, on torchvision's detection components (`FasterRCNN` with our own backbone and box head):
- "C4" layout (the reference's, detectron2's Res5ROIHeads): the backbone is the ResNet up to res4
  (conv1, bn1, maxpool, layer1..layer3; feature stride 16); the RPN and the RoI pooling run on
  that single map (one anchor level, sizes 32..512, aspect ratios 0.5, 1, 2); each RoI is pooled
  to 14x14 and goes through res5 (layer4, its first block has stride 2: 14x14 -> 7x7), then the
  extra BatchNorm of the reference ("Res5ROIHeadsExtraNorm"), global average pooling and the
  box predictor (class scores + class-specific box deltas). Nothing is frozen.
- "fpn" (an option): ResNet layer1..layer4 with torchvision's FPN (256 channels, max-pool P6),
  one anchor size a level, MultiScaleRoIAlign 7x7, the two-layer MLP box head.
- BatchNorm: plain BN in one process; synchronized over ranks under torchrun (`sync_bn`,
  common/syncbn.py: torch's SyncBatchNorm on GPU, ours on CPU).

Which part of a network is "res4" and which is "res5" (`eval.detection_model.split_network`):
- torchvision ResNets (`resnet18/34/50`): backbone = conv1 .. layer3, box head = layer4.
  With the ImageNet stem the stride is 16; with `cifar_stem` it is 4.
- CIFAR ResNets (`cifar_resnet*`, three stages): backbone = conv1 .. layer2 (stride 2), box head =
  layer3 (the last stage, stride 2), by the same rule "the last stage is the box head".
- ReActNet-A (the binary-backbone adapter, BURN's student and its baselines): backbone = stem +
  blocks.0 .. blocks.10, box head = blocks.11 (the last stride-2 block, 512 -> 1024) and
  blocks.12, then the extra BatchNorm. ImageNet variant: stem stride 2 and stride-2 blocks 1, 3,
  5 give stride 16 at blocks.10, exactly the C4 split; the `small_images` variant reaches only
  stride 4 there (its stem and block 1 have stride 1). Binary layers stay binary: the adapter
  fine-tunes the network as it is, the FP stem included.
The feature stride is measured (a forward on a 64 px image) rather than assumed, and the RoI
pooling uses it, so every split above works.

Training (the reference protocol, every number a field of `DetectionConfig`; a profile's
`eval.suites.detection.args.settings` scale it):
VOC07+12 trainval, shorter side drawn per image from 480..800 step 32, horizontal flip with
probability 1/2, test shorter side 800, longer side at most 1333, RGB with torchvision's mean /
std, global batch 16, SGD lr 0.02, momentum 0.9, weight decay 1e-4, 24k iterations, lr x0.1 at
18k and 22k, 100 warm-up iterations; N trials with seeds seed, seed + 1, ...: mean +- std.

Choices where the papers and the protocol are silent, or where torchvision differs:
- Input normalization: the encoder's own (the `norm` its encoder.pt records), unless the setting
  `norm` names another; an encoder file without one gets ImageNet's.
- Warm-up as detectron2's: the lr factor grows linearly from `warmup_factor` (0.001) to 1 over
  `warmup_iters`; then x`gamma` at each milestone.
- Weight decay on every parameter except normalisation layers' (detectron2's WEIGHT_DECAY_NORM
  = 0); biases decay as in detectron2's default.
- RoI pooling: RoIAlign with `aligned=True` (detectron2's ROIAlignV2), sampling ratio 0
  (adaptive), output 14x14 for C4; torchvision's MultiScaleRoIAlign uses aligned=False, so the C4
  pooler is our own small module; the FPN variant keeps torchvision's.
- RPN / RoI-head settings are detectron2's C4 defaults where torchvision's differ: 12000 / 6000
  pre-NMS and 2000 / 1000 post-NMS proposals (train / test), 256 anchors and 512 RoIs per
  image, 25% positive RoIs, test score threshold 0.05, NMS 0.5, 100 detections per image.
  torchvision's loss functions are kept (smooth-L1 with beta 1/9 for box regression in both
  stages; detectron2 uses plain L1 in the RPN), as are its box-coder weights (10, 10, 5, 5).
- Difficult objects are used in training (as detectron2's VOC loader does; `train_difficult`),
  and ignored by the evaluator.
- Sampling: an infinite stream of seeded permutations of the training set (detectron2's
  TrainingSampler); the flip of each draw comes from the same seeded generator. Under torchrun
  each rank takes every world-th image of the global batch; `batch_size` must divide by it.
- std over trials: population std (ddof = 0); per-class values are means over trials.
- A non-finite loss stops that trial with status "diverged" (its metrics are left out of the
  mean and the trial is listed).
"""
from __future__ import annotations

import math
import os
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any, Iterator, Sequence

import numpy as np
import torch
import torch.distributed as dist
import torch.nn as nn
from torch.utils.data import ConcatDataset, DataLoader, Dataset
from torchvision.models.detection import FasterRCNN

from common import runs
from common.config import apply_overrides, ArgumentParser, cli_main, parse_yaml, positive_int, read_params_file
from common.data import build_dataset
from common.distributed import setup_runtime
from common.errors import ConfigError
from common.syncbn import convert_sync_batchnorm
from eval.core.records import write_record
from eval.detection_config import ARG_SETTINGS, DetectionConfig, make_config, profile_settings
from eval.detection_model import build_detector, load_encoder_network
from eval.voc_eval import VOCDetectionEvaluator

HEADLINE = "AP.mean"  # the number `dvc exp show` lists per run (eval.pipeline's summary)


# --------------------------------------------------------------------------------------------
# Data
# --------------------------------------------------------------------------------------------

def build_split(cfg: DetectionConfig, entry: dict) -> Dataset:
    return build_dataset(cfg.dataset, cfg.root, entry["split"], **(entry.get("options") or {}))


def build_train_set(cfg: DetectionConfig) -> Dataset:
    parts = [build_split(cfg, e) for e in cfg.train_data]
    if not parts:
        raise ConfigError("detection.train_data: expected at least one split")
    joined = parts[0] if len(parts) == 1 else ConcatDataset(parts)
    joined.num_classes, joined.classes = parts[0].num_classes, parts[0].classes
    return joined


class TrainView(Dataset):
    """Items for training: float image in [0, 1], flipped when asked; boxes and labels."""

    def __init__(self, dataset: Dataset, keep_difficult: bool):
        self.dataset = dataset
        self.keep_difficult = keep_difficult

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, key: tuple[int, bool]):
        index, flip = key
        image, target = self.dataset[index]
        boxes, labels = target["boxes"].float(), target["labels"]
        if not self.keep_difficult:
            keep = ~target["difficult"]
            boxes, labels = boxes[keep], labels[keep]
        image = image.float() / 255.0
        if flip:  # continuous coordinates: x -> W - x
            width = image.shape[-1]
            image = image.flip(-1)
            boxes = torch.stack([width - boxes[:, 2], boxes[:, 1], width - boxes[:, 0], boxes[:, 3]], 1)
        return image, {"boxes": boxes.reshape(-1, 4), "labels": labels}


def training_batches(num_images: int, cfg: DetectionConfig, seed: int, rank: int, world: int
                     ) -> Iterator[list[tuple[int, bool]]]:
    """This rank's share of each global batch: (index, flip) pairs drawn from seeded
    permutations of the training set, one after the other (an infinite stream)."""
    g = torch.Generator().manual_seed(seed)
    stream: list[int] = []
    while True:
        while len(stream) < cfg.batch_size:
            stream += torch.randperm(num_images, generator=g).tolist()
        batch, stream = stream[:cfg.batch_size], stream[cfg.batch_size:]
        flips = (torch.rand(cfg.batch_size, generator=g) < 0.5).tolist() if cfg.flip else [False] * cfg.batch_size
        yield list(zip(batch, flips))[rank::world]


def _list_collate(items):
    return list(zip(*items))


# --------------------------------------------------------------------------------------------
# Training and evaluation
# --------------------------------------------------------------------------------------------

def lr_factor(step: int, cfg: DetectionConfig) -> float:
    """detectron2's WarmupMultiStepLR: linear warm-up from warmup_factor, x gamma per milestone."""
    factor = cfg.gamma ** sum(1 for m in cfg.milestones if step >= m)
    if step < cfg.warmup_iters:
        alpha = step / cfg.warmup_iters
        factor *= cfg.warmup_factor * (1 - alpha) + alpha
    return factor


def make_optimizer(model: nn.Module, cfg: DetectionConfig) -> torch.optim.SGD:
    norm_ids = {id(p) for m in model.modules() if isinstance(m, nn.modules.batchnorm._NormBase)
                for p in m.parameters(recurse=False)}
    params = [p for p in model.parameters() if p.requires_grad]
    groups = [{"params": [p for p in params if id(p) not in norm_ids], "weight_decay": cfg.weight_decay},
              {"params": [p for p in params if id(p) in norm_ids], "weight_decay": 0.0}]
    return torch.optim.SGD([g for g in groups if g["params"]], lr=cfg.lr, momentum=cfg.momentum)


def train_detector(model: FasterRCNN, train_set: Dataset, cfg: DetectionConfig, seed: int,
                   rt, log=print) -> dict:
    """cfg.iterations SGD steps; returns {"status", "step", "final_loss"}."""
    world = rt.world
    if cfg.batch_size % world:
        raise ConfigError(f"detection.batch_size={cfg.batch_size}: must divide by the {world} processes")
    core = model
    core.transform.min_size = tuple(cfg.train_sizes)
    model.train()
    if world > 1:
        model = nn.parallel.DistributedDataParallel(
            model, device_ids=[rt.device.index] if rt.device.type == "cuda" else None)
    optimizer = make_optimizer(core, cfg)
    loader = DataLoader(TrainView(train_set, cfg.train_difficult), num_workers=cfg.num_workers,
                        batch_sampler=_take(training_batches(len(train_set), cfg, seed, rt.rank, world),
                                            cfg.iterations),
                        collate_fn=_list_collate)
    loss_value = float("nan")
    for step, (images, targets) in enumerate(loader):
        for group in optimizer.param_groups:
            group["lr"] = cfg.lr * lr_factor(step, cfg)
        images = [im.to(rt.device) for im in images]
        targets = [{k: v.to(rt.device) for k, v in t.items()} for t in targets]
        losses = model(images, targets)
        loss = sum(losses.values())
        loss_value = float(loss.detach())
        if not math.isfinite(loss_value):
            return {"status": runs.DIVERGED, "step": step, "final_loss": loss_value}
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        if rt.main and (step % cfg.log_every == 0 or step == cfg.iterations - 1):
            parts = " ".join(f"{k.replace('loss_', '')} {float(v.detach()):.3f}" for k, v in losses.items())
            log(f"iter {step + 1}/{cfg.iterations} loss {loss_value:.3f} ({parts}) "
                f"lr {optimizer.param_groups[0]['lr']:.5f}")
    return {"status": runs.OK, "step": cfg.iterations, "final_loss": loss_value}


def _take(iterator: Iterator, n: int) -> list:
    return [next(iterator) for _ in range(n)]


@torch.no_grad()
def evaluate_detector(model: FasterRCNN, test_set: Dataset, cfg: DetectionConfig, rt) -> dict:
    """Detections on the test set (shorter side test_size), scored by eval/voc_eval.py."""
    model.eval()
    model.transform.min_size = (cfg.test_size,)
    records = []
    indices = list(range(rt.rank, len(test_set), rt.world))
    for start in range(0, len(indices), cfg.eval_batch_size):
        batch = [test_set[i] for i in indices[start:start + cfg.eval_batch_size]]
        outputs = model([im.float().div(255.0).to(rt.device) for im, _ in batch])
        for i, (_, target), out in zip(indices[start:], batch, outputs):
            records.append((i, {k: target[k] for k in ("boxes", "labels", "difficult")},
                            {k: v.cpu() for k, v in out.items()}))
    if rt.world > 1:
        gathered: list = [None] * rt.world
        dist.all_gather_object(gathered, records)
        records = [r for part in gathered for r in part]
    evaluator = VOCDetectionEvaluator(test_set.classes)
    for i, target, out in sorted(records, key=lambda r: r[0]):
        evaluator.add(i, target, out)
    return evaluator.evaluate()


def run_trial(encoder: str | Path, cfg: DetectionConfig, trial: int, rt, train_set=None,
              test_set=None, log=print) -> dict:
    """Build the detector from the encoder, train it (seed + trial), evaluate it."""
    seed = cfg.seed + trial
    torch.manual_seed(seed)
    train_set = build_train_set(cfg) if train_set is None else train_set
    test_set = build_split(cfg, cfg.test_data) if test_set is None else test_set
    net, meta = load_encoder_network(encoder)
    model = build_detector(net, train_set.num_classes, cfg, meta.get("norm")).to(rt.device)
    if cfg.sync_bn and rt.world > 1:
        model = convert_sync_batchnorm(model, rt.device)
    start = time.time()
    status = train_detector(model, train_set, cfg, seed, rt, log) if cfg.iterations else \
        {"status": runs.OK, "step": 0, "final_loss": None}
    result = {"seed": seed, **status, "train_seconds": round(time.time() - start, 2)}
    if status["status"] == runs.OK:
        result["metrics"] = evaluate_detector(model, test_set, cfg, rt)
    return result


def summarize(trials: list[dict]) -> dict:
    """mean +- std (ddof 0) of AP / AP50 / AP75 over the finished trials; per-class means."""
    done = [t["metrics"] for t in trials if t["status"] == runs.OK]
    summary: dict[str, Any] = {"trials_ok": len(done), "trials_diverged": [t["seed"] for t in trials
                                                                            if t["status"] != runs.OK]}
    if not done:
        return {**summary, "status": runs.DIVERGED}
    for key in ("AP", "AP50", "AP75"):
        values = np.array([m[key] for m in done])
        summary[key] = {"mean": float(values.mean()), "std": float(values.std()), "values": values.tolist()}
    per_class = {}
    for name in done[0]["per_class"]:
        rows = [m["per_class"][name] for m in done if m["per_class"][name] is not None]
        per_class[name] = ({k: float(np.mean([r[k] for r in rows])) for k in ("AP", "AP50", "AP75")}
                           if rows else None)
    return {**summary, "status": runs.OK, "per_class": per_class}


def run(encoder: str | Path, cfg: DetectionConfig, out: str | Path, profile: str | None, log=print) -> dict:
    """All trials; writes out/metrics.json (main process) and returns it."""
    rt = setup_runtime(cfg.device)
    start = time.time()
    train_set, test_set = build_train_set(cfg), build_split(cfg, cfg.test_data)
    trials = []
    for t in range(cfg.trials):
        result = run_trial(encoder, cfg, t, rt, train_set, test_set, log)
        trials.append(result)
        if rt.main and result["status"] == runs.OK:
            m = result["metrics"]
            log(f"trial {t + 1}/{cfg.trials} (seed {result['seed']}): AP {m['AP']:.2f} "
                f"AP50 {m['AP50']:.2f} AP75 {m['AP75']:.2f}")
    metrics = write_record(out, {**summarize(trials), "trials": trials, "encoder": str(encoder)}, rt.device,
                           asdict(cfg), dataset=cfg.dataset, profile=profile, stage="eval.detection",
                           seconds=round(time.time() - start, 2), world_size=rt.world)
    if rt.started_process_group:
        dist.destroy_process_group()
    return metrics


# --------------------------------------------------------------------------------------------
# CLI
# --------------------------------------------------------------------------------------------

def _params_file(path: str, explicit: bool) -> dict:
    p = Path(path)
    if not p.is_file():
        if explicit:
            raise ConfigError(f"params file {p}: not found")
        return {}
    from common.schema import check_params

    params = read_params_file(p)
    check_params(params)
    return params


@cli_main
def main(argv: Sequence[str] | None = None) -> int:
    parser = ArgumentParser(prog="python -m eval.detection", description=__doc__.splitlines()[0])
    parser.add_argument("--encoder", required=True, help="encoder.pt of a ResNet or ReActNet-A")
    parser.add_argument("--out", required=True, help="output folder (metrics.json)")
    parser.add_argument("--params", default=None,
                        help="parameter file (default params.yaml, if there): its eval.suites.detection.args.settings "
                             "are laid over the reference protocol, its data.root is the default --root")
    parser.add_argument("--settings", default=None,
                        help="settings laid over those, a YAML mapping (what the pipeline passes)")
    parser.add_argument("--dataset", choices=("voc_det", "synthetic_det"), default=None)
    parser.add_argument("--root", default=None, help="data root (voc_det: the folder holding VOCdevkit)")
    parser.add_argument("--trials", type=positive_int, default=None)
    parser.add_argument("overrides", nargs="*", help="detection settings, key=value (e.g. iterations=100)")
    args = parser.parse_args(argv)
    params = _params_file(args.params or "params.yaml", explicit=args.params is not None)
    settings = profile_settings(params)
    if args.settings is not None:
        given = parse_yaml(args.settings, "--settings")
        if not isinstance(given, dict):
            raise ConfigError(f"--settings {args.settings!r}: expected a YAML mapping of detection settings")
        settings.update(given)
    for name in ARG_SETTINGS:
        if getattr(args, name) is not None:
            settings[name] = getattr(args, name)
    settings = apply_overrides(settings, args.overrides)
    if settings.get("root") is None and not str(settings.get("dataset", "voc_det")).startswith("synthetic"):
        settings["root"] = (params.get("data") or {}).get("root")  # as the pipeline gives every suite
    cfg = make_config(settings)
    if not Path(args.encoder).is_file():
        raise ConfigError(f"--encoder {args.encoder}: file not found")
    metrics = run(args.encoder, cfg, args.out, params.get("profile"))
    if int(os.environ.get("RANK", "0")) != 0:
        return 0
    if metrics["status"] == runs.OK:
        print(f"{args.out}: AP {metrics['AP']['mean']:.2f} +- {metrics['AP']['std']:.2f}, "
              f"AP50 {metrics['AP50']['mean']:.2f}, AP75 {metrics['AP75']['mean']:.2f} "
              f"over {metrics['trials_ok']} trial(s)")
    else:
        print(f"{args.out}: every trial diverged")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
