"""Semi-supervised fine-tuning with 1% / 10% labels, at full precision or quantized to k bits.

The whole network (backbone + a new linear layer) is trained on the labelled subset and tested
on the test split (docs/protocols.md section 3; BURN Table 2, CQ Tables 1, 4, 6, 7).

Labelled subsets: `common.data.subsets.label_fraction_indices`: SimCLR's fixed file list when
`--list-file` is given (ImageNet), otherwise a seeded, class-balanced list, written once to
`--subset-dir` and reused from there.

Presets (`eval/presets.py`):
- "burn": SGD momentum 0.9, weight decay 5e-4, 20 epochs, lr x0.2 at epochs 12 and 16; the
  backbone lr is swept over {0.1, 0.01, 0.001} and the layer's lr is that times {1, 10, 100}: all
  9 runs start from the same weights and the same seed, all 9 are recorded under "runs", and the
  best by TEST top-1 is reported, as the paper does ("selection": "test_top1"; optimistic, since
  the test split chooses the setting; the project's subsets leave no held-out split to spare);
- "cq" (CIFAR-100: 50 epochs) and "cq_imagenet" (30 epochs on 10%, 60 on 1%): SGD Nesterov 0.9,
  no weight decay, batch 512, cosine from lr 0.1; one run.
`--lrs` / `--head-mults` replace the grid, `--epochs` / `--batch-size` the preset's values.

k-bit fine-tuning (`--bits k`, CQ's "Fine-tune Acc. (4-bit)"): the backbone is converted with
`common.quant.quantize_model` (its default full-precision layers, e.g. the stem and downsample
convs of ImageNet ResNets, stay FP; `--quant-mode` floor = CQ Eq. 9, or cpt) and set to k bits
for training AND evaluation; the new linear layer stays full precision (CQ keeps the FC in FP).

Choices where the papers are silent:
- Training views: random resized crop (0.08, 1) + horizontal flip (`crop_flip`), as SimCLR's
  fine-tuning; test: the deterministic evaluation transform of `eval.core.extraction`.
- BatchNorm trains (train mode) during fine-tuning and uses running statistics at test.
- Weight decay applies to every parameter (torch SGD's weight_decay), BatchNorm included.
- The linear layer starts at weight ~ N(0, 0.01^2), bias 0.
- Schedules are stepped per iteration (milestone epoch m = step m * steps_per_epoch); batches
  are drawn without replacement, the last one of an epoch may be smaller; a batch larger than
  the labelled subset becomes the subset size.
- Sweep ties: the first setting in grid order (backbone lr descending, multiplier ascending).
- A non-finite loss stops that run: status "diverged", its accuracies are those at that point.
- Accuracies are fractions in [0, 1]. The fine-tuned weights are not saved.

Under `torchrun --nproc_per_node=N -m eval.finetune ...` the ranks split every training batch
(`eval.core.sharded`: each decodes its rows with `--workers` loader processes, BatchNorm synchronized,
gradients summed) and the test pass, and rank 0 writes metrics.json: at full precision, what one
process writes up to float rounding. k-bit: each rank's quantizer takes the range of its own rows.

CLI:
    python -m eval.finetune --encoder runs/.../encoder.pt --dataset cifar100 --root ROOT --out DIR \
        --fraction 0.1 [--preset burn|cq|cq_imagenet] [--bits 4] [--quant-mode floor|cpt] \
        [--subset-dir DIR | --list-file FILE] [--epochs N] [--lrs 0.1,0.01] [--head-mults 1,10]
"""
from __future__ import annotations

import math
import time
from dataclasses import replace
from typing import Sequence

import torch
import torch.nn as nn
from torch.utils.data import Dataset, Subset

from common import runs
from common import distributed, predictions
from common.config import ArgumentParser, cli_main, count, positive_int
from common.data.subsets import label_fraction_indices
from common.errors import ConfigError
from common.optim import apply_schedule
from common.quant import QuantConfig, quantize_model, set_precision
from common.syncbn import convert_sync_batchnorm
from common.views import build_views
from eval.core.cli import add_data_args, eval_process, finish
from eval.core.data import DataSpec, parse_options
from eval.core.encoders import file_sha256, load_backbone, resolve_device
from eval.core.extraction import TransformSpec, extract_features
from eval.core.records import evaluation_record, topk_accuracy
from eval.core.sharded import EpochLoader, batch_loss, crop_source, sum_over_ranks
from eval.core.training import new_linear, schedule_for, sgd_for
from eval.presets import FINETUNE_PRESETS, TrainPreset, get_preset, parse_floats

HEADLINE = "best.top1"  # the number `dvc exp show` lists per run (eval.pipeline's summary)


class Classifier(nn.Module):
    """backbone -> linear layer (the fine-tuned network)."""

    def __init__(self, backbone: nn.Module, num_classes: int):
        super().__init__()
        self.backbone = backbone
        self.head = new_linear(backbone.feature_dim, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.backbone(x))


def build_classifier(encoder_path, num_classes: int, bits: int | None = None, quant_mode: str = "floor",
                     device: str | torch.device = "cpu", seed: int = 0) -> Classifier:
    """The encoder's backbone plus a new linear layer; with `bits`, the backbone quantized."""
    backbone, _ = load_backbone(encoder_path, "cpu")
    if bits is not None:
        if isinstance(bits, bool) or not 1 <= int(bits) <= 32:
            raise ConfigError(f"--bits {bits!r}: expected an integer in 1..32 (32 = full precision)")
        quantize_model(backbone, config=QuantConfig(mode=quant_mode))
        set_precision(backbone, int(bits))
    torch.manual_seed(seed)  # the same initial layer for every run of a sweep
    return Classifier(backbone, num_classes).to(device)


def finetune(model: Classifier, labelled: Dataset, test_set: Dataset, preset: TrainPreset,
             head_multiplier: float, image_size: int, norm: str, seed: int = 0,
             device: str | torch.device = "cpu", num_workers: int = 0) -> dict:
    """Fine-tune `model` on `labelled`; returns status and top-1 / top-5 on `test_set`. Under
    torchrun the ranks split every batch (`eval.core.sharded`; BatchNorm synchronized by the caller)."""
    device = torch.device(device)
    groups = [{"params": list(model.backbone.parameters()), "lr": preset.lr},
              {"params": list(model.head.parameters()), "lr": preset.lr * head_multiplier}]
    params = [p for group in groups for p in group["params"]]
    optimizer = sgd_for(preset, groups)
    batch = min(preset.batch_size, len(labelled))
    steps_per_epoch = math.ceil(len(labelled) / batch)
    schedule = schedule_for(preset, steps_per_epoch)
    views, _ = build_views("crop_flip", image_size, norm=norm)
    generator = torch.Generator().manual_seed(seed)
    source, epoch_order = crop_source(labelled, views, seed)  # image folders: crops from the whole file
    loader = EpochLoader(source, batch, device, num_workers)
    status, loss_value, step, seen, started = runs.OK, None, 0, 0, time.perf_counter()
    model.train()
    for epoch in range(preset.epochs):
        for images, labels, part in loader.epoch(epoch_order(epoch, generator)):
            seen += part[0]
            apply_schedule(optimizer, schedule, step)
            loss = batch_loss(model(views(images, generator, part, slot=0)), labels, part[0])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            loss_value = sum_over_ranks(params, loss)
            optimizer.step()
            step += 1
            if not math.isfinite(loss_value):
                status = runs.DIVERGED
                break
        if status != runs.OK:
            break
    seconds = max(time.perf_counter() - started, 1e-9)  # training only, input pipeline included
    logits, targets = extract_features(model, test_set, TransformSpec.build(
        {"image_size": image_size, "resize": None, "norm": norm}), 256, device, num_workers)
    return {"status": status, "epochs_run": epoch + 1, "final_loss": loss_value,
            "train_images_per_s": seen / seconds, **topk_accuracy(logits, targets.long()),
            **predictions.encode(logits, targets)}


def run_finetune(encoder_path, train_spec: DataSpec, test_spec: DataSpec, preset_name: str = "burn",
                 fraction: float | None = 0.1, bits: int | None = None, quant_mode: str = "floor",
                 epochs: int | None = None, batch_size: int | None = None,
                 lrs: Sequence[float] | None = None, head_mults: Sequence[float] | None = None,
                 seed: int = 0, subset_dir=None, list_file=None, device: str | torch.device = "cpu",
                 transform: TransformSpec | None = None, num_workers: int = 0) -> dict:
    """The whole suite for one (checkpoint, label fraction, precision): every run of the grid."""
    started = time.time()
    preset = get_preset(FINETUNE_PRESETS, preset_name, "fine-tuning")
    lrs = parse_floats(lrs, "--lrs") if lrs is not None else preset.backbone_lrs
    head_mults = parse_floats(head_mults, "--head-mults") if head_mults is not None else preset.head_multipliers
    base = replace(preset.train, epochs=preset.epochs_for(fraction)).scaled(epochs, None, batch_size)
    sha = file_sha256(encoder_path)
    train_set, test_set = train_spec.build(), test_spec.build()
    num_classes = int(getattr(train_set, "num_classes", 0))
    if num_classes < 2:
        raise ConfigError(f"--dataset {train_spec.name}: expected a single-label classification data set")
    indices = label_fraction_indices(train_set, fraction, seed, cache_dir=subset_dir, list_file=list_file)
    labelled = Subset(train_set, indices)
    _, meta = load_backbone(encoder_path)
    resolved = (transform or TransformSpec()).resolve(train_set, train_spec, lambda: meta)
    grid = []
    for lr in lrs:
        for mult in head_mults:
            model = build_classifier(encoder_path, num_classes, bits, quant_mode, device, seed)
            if distributed.world_size() > 1:  # BatchNorm statistics over the global batch, as one process
                convert_sync_batchnorm(model, torch.device(device))
            result = finetune(model, labelled, test_set, replace(base, lr=lr), mult,
                              resolved["image_size"], resolved["norm"], seed, device, num_workers)
            grid.append({"backbone_lr": lr, "head_multiplier": mult, "head_lr": lr * mult, **result})
    best = max(grid, key=lambda r: r["top1"])  # max keeps the first of equal values
    per_image = best[predictions.KEY]  # kept once, for the selected run
    for r in grid:
        del r[predictions.KEY]
    measured = {
        "preset": preset_name, "settings": base.as_dict(),
        "precision": "fp" if bits is None or bits >= 32 else f"{int(bits)}-bit",
        "bits": bits, "quant_mode": quant_mode if bits is not None else None,
        "fraction": fraction, "list_file": str(list_file) if list_file else None,
        "num_labelled": len(indices), "num_test": len(test_set), "num_classes": num_classes,
        "selection": "test_top1", "runs": grid, "best": best,
        "top1": best["top1"], "top5": best["top5"], predictions.KEY: per_image, "status": best["status"],
        "seed": seed, "transform": resolved}
    return evaluation_record("finetune", measured, encoder_path, sha, train_spec, test_spec, started)


@cli_main
def main(argv: Sequence[str] | None = None) -> int:
    parser = ArgumentParser(prog="python -m eval.finetune", description=__doc__.splitlines()[0])
    parser.add_argument("--encoder", required=True)
    add_data_args(parser)
    parser.add_argument("--out", required=True)
    parser.add_argument("--preset", default="burn", help=f"one of {sorted(FINETUNE_PRESETS)}")
    parser.add_argument("--fraction", type=float, default=0.1, help="labelled fraction (0.01 or 0.1); with --list-file it only picks the CQ ImageNet epochs")
    parser.add_argument("--list-file", default=None, help="fixed list of labelled images (ImageNet)")
    parser.add_argument("--subset-dir", default=None, help="where the seeded subset lists are kept")
    parser.add_argument("--bits", type=positive_int, default=None, help="fine-tune and test quantized to k bits")
    parser.add_argument("--quant-mode", default="floor", help="floor (CQ Eq. 9) | cpt")
    parser.add_argument("--epochs", type=positive_int, default=None)
    parser.add_argument("--batch-size", type=positive_int, default=None)
    parser.add_argument("--lrs", default=None, help="backbone lrs to sweep, e.g. 0.1,0.01,0.001")
    parser.add_argument("--head-mults", default=None, help="head lr multipliers, e.g. 1,10,100")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--train-split", default="train")
    parser.add_argument("--test-split", default="test")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--image-size", type=positive_int, default=None)
    parser.add_argument("--norm", default=None)
    parser.add_argument("--workers", type=count, default=0, help="loader processes decoding the images (per rank)")
    args = parser.parse_args(argv)
    options = parse_options(args.options)
    train_spec = DataSpec(args.dataset, args.root, args.train_split, options, args.limit)
    test_spec = DataSpec(args.dataset, args.root, args.test_split, options, args.limit)
    with eval_process(args):
        device = resolve_device(args.device)
        metrics = run_finetune(args.encoder, train_spec, test_spec, args.preset, args.fraction, args.bits,
                               args.quant_mode, args.epochs, args.batch_size, args.lrs, args.head_mults,
                               args.seed, args.subset_dir, args.list_file, device,
                               TransformSpec(args.image_size, None, args.norm), args.workers)
        finish(args, metrics, device, "eval.finetune")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
