"""The command-line pieces the eval CLIs share: data and extractor arguments, the torchrun process,
and `finish` (the record written through `eval.core.records.write_record`, one summary line)."""
from __future__ import annotations

import argparse
import contextlib
import os
from typing import Callable

import torch

from common import runs
from common.config import count, positive_int, positive_number
from common.distributed import is_main_process
from eval.core.data import DataSpec, parse_options
from eval.core.encoders import resolve_device
from eval.core.extraction import FeatureExtractor, TransformSpec
from eval.core.records import write_record


def add_data_args(parser: argparse.ArgumentParser, dataset_required: bool = True) -> None:
    parser.add_argument("--dataset", required=dataset_required, help="a registered data set name")
    parser.add_argument("--root", default=None, help="data root (none for synthetic data)")
    parser.add_argument("--options", default=None, help="data set options as YAML, e.g. '{num_images: 256}'")
    parser.add_argument("--limit", type=positive_int, default=None, help="keep the first N images of each split")


def add_extractor_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--encoder", required=True, help="encoder.pt written by a pretraining stage")
    parser.add_argument("--cache-dir", default=None, help="feature cache folder (default: no cache)")
    parser.add_argument("--device", default="auto", help="auto | cpu | cuda")
    parser.add_argument("--extract-batch", type=positive_int, default=256, help="batch size of the extraction")
    parser.add_argument("--workers", type=count, default=0, help="loader processes decoding the images")
    parser.add_argument("--image-size", type=positive_int, default=None)
    parser.add_argument("--resize", type=positive_int, default=None)
    parser.add_argument("--norm", default=None, help="imagenet | cifar10 | cifar100")


def add_training_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--epochs", type=positive_int, default=None, help="override the preset's epochs")
    parser.add_argument("--lr", type=positive_number, default=None, help="override the preset's lr")
    parser.add_argument("--batch-size", type=positive_int, default=None, help="override the preset's batch size")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--train-split", default="train")
    parser.add_argument("--test-split", default="test")
    parser.add_argument("--out", required=True, help="output folder (metrics.json)")


@contextlib.contextmanager
def eval_process(args: argparse.Namespace):
    """One evaluation CLI's process. Under torchrun (WORLD_SIZE > 1) it joins the process group
    (gloo on CPU, NCCL on GPU; `args.device` becomes this rank's device) for the suite's feature
    extraction, which the ranks share (`eval.core.extraction.extract_features`), and leaves it at the
    end; rank 0 writes the results. One process: nothing changes."""
    if int(os.environ.get("WORLD_SIZE", "1")) == 1:
        yield
        return
    from common.distributed import setup_runtime

    rt = setup_runtime(args.device)
    args.device = str(rt.device)
    try:
        yield
    finally:
        if rt.started_process_group:
            import torch.distributed as dist

            dist.destroy_process_group()


def spec_from_args(args: argparse.Namespace, split: str) -> DataSpec:
    return DataSpec(args.dataset, args.root, split, parse_options(args.options), args.limit)


def extractor_from_args(args: argparse.Namespace) -> FeatureExtractor:
    return FeatureExtractor(args.encoder, args.cache_dir, resolve_device(args.device), args.extract_batch,
                            TransformSpec(args.image_size, args.resize, args.norm), args.workers)


def top_line(metrics: dict) -> str:
    return (f"{metrics['suite']} ({metrics.get('mode', '')}) top1 {metrics['top1']:.4f} "
            f"top5 {metrics['top5']:.4f} [{runs.status_of(metrics)}]")


def finish(args: argparse.Namespace, metrics: dict, device: torch.device, stage: str,
           summary: Callable[[dict], str] = top_line) -> dict:
    """Write the suite's record (provenance of every argument but --out) and print one line."""
    params = {k: v for k, v in vars(args).items() if k != "out"}
    write_record(args.out, metrics, device, params, stage=stage, dataset=getattr(args, "dataset", None))
    if is_main_process():
        print(f"{args.out}: {summary(metrics)}")
    return metrics
