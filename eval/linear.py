"""Linear evaluation: one linear layer trained on a frozen backbone (docs/protocols.md section 3).

Strictly linear: logits = W f + b on the backbone's pooled features f, nothing else trainable
(the public BURN code left a pretrained FP 1024x1024 layer trainable; that variant is not offered
here). The backbone is frozen and in eval mode (BatchNorm uses running statistics).

Presets (`eval/presets.py`): "burn" (SGD momentum 0.9, lr 30, x0.1 at epochs 60 and 80, 100
epochs, no weight decay), "cq" (CIFAR-100: 50 epochs, lr 0.1 cosine, Nesterov 0.9, batch 512,
no weight decay) and "cq_imagenet" (90 epochs, lr 0.2, Nesterov, batch 512). epochs, lr and
batch size can be overridden (milestones scale with epochs).

Two modes, named in the output as "mode":
- "cached": the training images' features are extracted once, with the deterministic
  evaluation transform, and the layer is trained on them (fast; no augmentation);
- "augment": every training batch is augmented on the fly (random resized crop + flip, the
  `crop_flip` views, scale (0.08, 1)) and passed through the frozen backbone (eval mode, no
  gradient), as the papers' protocols do.
Test features always come from the evaluation transform (and the cache).

Choices where the papers are silent:
- Features are used as they are (no normalization), as in MoCo's linear classification protocol
  that BURN's lr of 30 comes from.
- The layer starts at weight ~ N(0, 0.01^2), bias 0 (MoCo's linear classifier initialization).
- Weight decay (scene preset only) applies to weight and bias, as torch SGD's weight_decay.
- Shuffling: one torch.Generator seeded with `seed` draws every epoch's order (and the augment
  mode's crops), so the same seed gives the same result on the same CPU.
- The lr schedule is stepped per iteration: milestone epoch m becomes step m * steps_per_epoch;
  cosine decays to 0 at the last step, without warm-up.
- A non-finite loss stops training: status "diverged" with the epoch, accuracies of the layer at
  that point (NaN logits count as wrong).
- Accuracies are fractions in [0, 1]; top-5 is top-min(5, classes).

Under `torchrun --nproc_per_node=N -m eval.linear ...` (or eval.knn, eval.transfer) the ranks
share the feature extraction (each a contiguous part of each split, gathered in order); every
rank then trains the same layer on the same features and rank 0 writes metrics.json, which
equals one process's up to float rounding. In the augment mode the ranks split every training
batch instead (`eval.core.sharded`: each decodes and forwards its rows, `--workers` loader processes
each, gradients summed), so N ranks train what one process trains.

CLI:
    python -m eval.linear --encoder runs/.../encoder.pt --dataset cifar10 --root ../shared/data/cifar10 \
        --out runs/eval/linear/x [--preset burn|cq|cq_imagenet] [--mode cached|augment] \
        [--epochs N] [--lr LR] [--batch-size B] [--seed S] [--cache-dir DIR] [--limit N] ...
writes DIR/metrics.json (atomically) with the settings used and provenance.
"""
from __future__ import annotations

import math
import time
from typing import Callable, Iterable, Iterator, Sequence

import torch
import torch.nn as nn
from torch.utils.data import Dataset

from common import runs
from common import predictions
from common.config import ArgumentParser, cli_main
from common.errors import ConfigError
from common.optim import apply_schedule
from common.views import build_views
from eval.core.cli import (add_data_args, add_extractor_args, add_training_args, eval_process,
                           extractor_from_args, finish, spec_from_args)
from eval.core.data import DataSpec
from eval.core.encoders import LayerFeatures
from eval.core.extraction import FeatureExtractor
from eval.core.records import evaluation_record, int_labels, sizes, topk_accuracy
from eval.core.sharded import EpochLoader, batch_loss, crop_source, sum_over_ranks
from eval.core.training import new_linear, schedule_for, sgd_for
from eval.presets import LINEAR_PRESETS, TrainPreset, get_preset

MODES = ("cached", "augment")
HEADLINE = "top1"  # the number `dvc exp show` lists per run (eval.pipeline's summary)


# --------------------------------------------------------------------------------------------
# Training the linear layer
# --------------------------------------------------------------------------------------------

def fit_linear(head: nn.Linear, batches: Callable[[int], Iterable[tuple[torch.Tensor, torch.Tensor, int]]],
               steps_per_epoch: int, preset: TrainPreset, sharded: bool = False) -> dict:
    """Train `head` with the preset's SGD and schedule; `batches(epoch)` yields (features, labels,
    global batch size). `sharded`: the batches are this torchrun rank's rows of the global batch
    (`eval.core.sharded`: gradients summed over ranks). Returns {"status": "ok" | "diverged",
    "epochs_run", "final_loss", "train_images_per_s"} (global images trained per second of this loop,
    input pipeline included: what a GPU check compares)."""
    params = list(head.parameters())
    optimizer = sgd_for(preset, [{"params": params}])
    schedule = schedule_for(preset, steps_per_epoch)
    step, loss_value, images, started = 0, None, 0, time.perf_counter()
    head.train()
    for epoch in range(preset.epochs):
        for x, y, total in batches(epoch):
            images += total
            apply_schedule(optimizer, schedule, step)
            loss = batch_loss(head(x), y, total)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            loss_value = sum_over_ranks(params, loss) if sharded else loss.item()
            optimizer.step()
            step += 1
            if not math.isfinite(loss_value):
                return {"status": runs.DIVERGED, "epochs_run": epoch + 1, "final_loss": loss_value}
    return {"status": runs.OK, "epochs_run": preset.epochs, "final_loss": loss_value,
            "train_images_per_s": images / max(time.perf_counter() - started, 1e-9)}


def cached_batches(x: torch.Tensor, y: torch.Tensor, batch_size: int, generator: torch.Generator):
    """`batches(epoch)` over in-memory features: a fresh random order every epoch."""
    def batches(epoch: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        order = torch.randperm(x.shape[0], generator=generator)
        for start in range(0, x.shape[0], batch_size):
            idx = order[start:start + batch_size]
            yield x[idx], y[idx], len(idx)
    return batches


def augmented_batches(model: nn.Module, dataset: Dataset, views, batch_size: int,
                      generator: torch.Generator, device: torch.device, num_workers: int = 0, seed: int = 0):
    """`batches(epoch)` of features of augmented images through the frozen `model`: under torchrun,
    of this rank's rows of every global batch (`eval.core.sharded`); image folders crop from the whole
    file (`eval.core.sharded.crop_source`)."""
    source, epoch_order = crop_source(dataset, views, seed)
    loader = EpochLoader(source, batch_size, device, num_workers)

    def batches(epoch: int):
        for images, labels, part in loader.epoch(epoch_order(epoch, generator)):
            with torch.no_grad():
                x = model(views(images, generator, part, slot=0)).float()
            yield x, labels, part[0]
    return batches


def train_linear_cached(train_x: torch.Tensor, train_y: torch.Tensor, num_classes: int,
                        preset: TrainPreset, seed: int = 0, device: str | torch.device = "cpu"
                        ) -> tuple[nn.Linear, dict]:
    """A linear layer trained on cached features (the "cached" mode)."""
    device = torch.device(device)
    torch.manual_seed(seed)
    head = new_linear(train_x.shape[1], num_classes).to(device)
    generator = torch.Generator().manual_seed(seed)
    x, y = train_x.float().to(device), int_labels(train_y, "linear").to(device)
    batch = min(preset.batch_size, x.shape[0])
    info = fit_linear(head, cached_batches(x, y, batch, generator), math.ceil(x.shape[0] / batch), preset)
    return head, info


def train_linear_augmented(model: nn.Module, dataset: Dataset, num_classes: int, feature_dim: int,
                           preset: TrainPreset, image_size: int, norm: str, seed: int = 0,
                           device: str | torch.device = "cpu", num_workers: int = 0) -> tuple[nn.Linear, dict]:
    """A linear layer trained on features of crop+flip augmented images (the "augment" mode); under
    torchrun the ranks share every batch (`eval.core.sharded`) and train the same layer."""
    device = torch.device(device)
    torch.manual_seed(seed)
    model.eval()
    head = new_linear(feature_dim, num_classes).to(device)
    views, _ = build_views("crop_flip", image_size, norm=norm)
    generator = torch.Generator().manual_seed(seed)
    batch = min(preset.batch_size, len(dataset))
    batches = augmented_batches(model, dataset, views, batch, generator, device, num_workers, seed)
    info = fit_linear(head, batches, math.ceil(len(dataset) / batch), preset, sharded=True)
    return head, info


@torch.no_grad()
def linear_scores(head: nn.Linear, x: torch.Tensor) -> torch.Tensor:
    head.eval()
    device = next(head.parameters()).device
    return head(x.float().to(device)).cpu()


def evaluate_linear(head: nn.Linear, x: torch.Tensor, y: torch.Tensor) -> dict[str, float]:
    return topk_accuracy(linear_scores(head, x), int_labels(y, "linear"))


# --------------------------------------------------------------------------------------------
# One evaluation run (used by the linear and transfer CLIs)
# --------------------------------------------------------------------------------------------

def run_linear(extractor: FeatureExtractor, train_spec: DataSpec, test_spec: DataSpec,
               preset: TrainPreset, mode: str = "cached", seed: int = 0, suite: str = "linear") -> dict:
    """Train and test one linear layer; returns the metrics dict (see the module docstring)."""
    if mode not in MODES:
        raise ConfigError(f"--mode {mode!r}: expected one of {', '.join(MODES)}")
    started = time.time()
    train_set, test_set = train_spec.build(), test_spec.build()
    num_classes = int(getattr(train_set, "num_classes", 0))
    if num_classes < 2:
        raise ConfigError(f"--dataset {train_spec.name}: expected a classification data set with num_classes")
    test = extractor.features(test_spec, "pooled", dataset=test_set)
    if mode == "cached":
        train = extractor.features(train_spec, "pooled", dataset=train_set)
        head, info = train_linear_cached(train.features, train.targets, num_classes, preset, seed,
                                         extractor.device)
        num_train = train.features.shape[0]
    else:
        transform = extractor.transform.resolve(train_set, train_spec, lambda: extractor.meta)
        model = LayerFeatures(extractor.backbone, "pooled").eval()
        head, info = train_linear_augmented(model, train_set, num_classes, test.features.shape[1], preset,
                                            transform["image_size"], transform["norm"], seed,
                                            extractor.device, extractor.num_workers)
        num_train = len(train_set)
    scores, test_y = linear_scores(head, test.features), int_labels(test.targets, "linear")
    accuracy = {**topk_accuracy(scores, test_y), **predictions.encode(scores, test_y)}
    measured = {"mode": mode, "preset": preset.name, "settings": preset.as_dict(), "seed": seed, **info,
                **accuracy, **sizes(num_classes, num_train, test.features)}
    return evaluation_record(suite, measured, extractor.encoder_path, extractor.sha256, train_spec, test_spec, started)


@cli_main
def main(argv: Sequence[str] | None = None) -> int:
    parser = ArgumentParser(prog="python -m eval.linear", description=__doc__.splitlines()[0])
    add_extractor_args(parser)
    add_data_args(parser)
    add_training_args(parser)
    parser.add_argument("--preset", default="burn", help=f"one of {sorted(LINEAR_PRESETS)}")
    parser.add_argument("--mode", default="cached", help="cached | augment")
    args = parser.parse_args(argv)
    preset = get_preset(LINEAR_PRESETS, args.preset, "linear evaluation").scaled(args.epochs, args.lr,
                                                                                 args.batch_size)
    with eval_process(args):
        extractor = extractor_from_args(args)
        metrics = run_linear(extractor, spec_from_args(args, args.train_split), spec_from_args(args, args.test_split),
                             preset, args.mode, args.seed)
        finish(args, metrics, extractor.device, "eval.linear")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
