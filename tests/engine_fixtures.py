"""Tiny, fast pieces for engine tests (shared by the in-process and the torchrun tests)."""
import torch

from common.backbones import build_backbone
from common.data import build_dataset
from common.engine import TrainConfig
from common.methods.simclr import SimCLR
from common.views import build_views


def tiny_dataset(num_images: int = 64, split: str = "train"):
    return build_dataset("synthetic", None, split, num_images=num_images, image_size=16, seed=0)


def tiny_simclr(deterministic_views: bool = False) -> SimCLR:
    torch.manual_seed(0)
    backbone = build_backbone("cifar_resnet20", width=0.25)
    views = (build_views("none", 16, norm="cifar10") if deterministic_views
             else build_views("simclr", 16, strength=0.5, blur=False, norm="cifar10"))
    return SimCLR(backbone, views, proj_dim=8, hidden_dim=16)


def tiny_config(**overrides) -> TrainConfig:
    settings = dict(batch_size=16, steps=12, optimizer="lars", lr=0.3, weight_decay=1e-6,
                    warmup_steps=2, ckpt_every=3, log_every=2, num_classes=10, progress=False)
    settings.update(overrides)
    return TrainConfig(**settings)
