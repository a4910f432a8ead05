"""The detection suite's settings: one dataclass, its defaults the reference protocol (`paper`),
and the suite's own CPU-sized profiles (`mini`, `smoke`) laid over it. Both the suite
(`eval.detection`) and the detector (`eval.detection_model`) read it, neither the other."""
from __future__ import annotations

from dataclasses import asdict, dataclass, field

from common.errors import ConfigError


@dataclass
class DetectionConfig:
    """Every setting of the suite; the defaults are the reference protocol (`paper`)."""

    dataset: str = "voc_det"
    root: str | None = None
    train_data: list = field(default_factory=lambda: [
        {"split": "trainval", "options": {"year": "2007"}},
        {"split": "trainval", "options": {"year": "2012"}}])
    test_data: dict = field(default_factory=lambda: {"split": "test", "options": {"year": "2007"}})
    layout: str = "c4"  # c4 | fpn
    train_sizes: list = field(default_factory=lambda: list(range(480, 801, 32)))
    test_size: int = 800
    max_size: int = 1333
    flip: bool = True
    train_difficult: bool = True
    batch_size: int = 16
    lr: float = 0.02
    momentum: float = 0.9
    weight_decay: float = 1e-4
    iterations: int = 24000
    milestones: list = field(default_factory=lambda: [18000, 22000])
    gamma: float = 0.1
    warmup_iters: int = 100
    warmup_factor: float = 0.001
    anchor_sizes: list = field(default_factory=lambda: [32, 64, 128, 256, 512])
    aspect_ratios: list = field(default_factory=lambda: [0.5, 1.0, 2.0])
    pooler_resolution: int = 14
    rpn_pre_nms_train: int = 12000
    rpn_pre_nms_test: int = 6000
    rpn_post_nms_train: int = 2000
    rpn_post_nms_test: int = 1000
    rpn_batch_per_image: int = 256
    roi_batch_per_image: int = 512
    roi_positive_fraction: float = 0.25
    score_thresh: float = 0.05
    nms_thresh: float = 0.5
    detections_per_image: int = 100
    sync_bn: bool = True
    trials: int = 5
    seed: int = 0
    norm: str | None = None  # input normalization; None: the encoder's own (encoder.pt), else ImageNet's
    device: str = "auto"
    num_workers: int = 0
    eval_batch_size: int = 1
    log_every: int = 20

    @classmethod
    def from_dict(cls, d: dict) -> "DetectionConfig":
        unknown = sorted(set(d) - set(cls.__dataclass_fields__))
        if unknown:
            raise ConfigError(f"detection: unknown setting(s) {unknown}; known: {sorted(cls.__dataclass_fields__)}")
        return cls(**d)

    def __post_init__(self):
        for name in ("test_size", "max_size", "batch_size", "trials", "eval_batch_size",
                     "pooler_resolution", "log_every", "rpn_batch_per_image", "roi_batch_per_image"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigError(f"detection.{name}={value!r}: expected a positive integer")
        for name in ("iterations", "warmup_iters", "seed", "num_workers"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ConfigError(f"detection.{name}={value!r}: expected an integer >= 0")
        if self.layout not in ("c4", "fpn"):
            raise ConfigError(f"detection.layout={self.layout!r}: expected c4 or fpn")
        if not self.train_sizes or not all(isinstance(s, int) and s > 0 for s in self.train_sizes):
            raise ConfigError(f"detection.train_sizes={self.train_sizes!r}: expected a list of positive integers")
        if list(self.milestones) != sorted(self.milestones):
            raise ConfigError(f"detection.milestones={self.milestones!r}: expected increasing iterations")
        if not self.lr > 0 or self.weight_decay < 0 or not 0 <= self.momentum < 1:
            raise ConfigError("detection: expected lr > 0, weight_decay >= 0 and 0 <= momentum < 1")
        if self.layout == "fpn" and len(self.anchor_sizes) != 5:
            raise ConfigError(f"detection.anchor_sizes={self.anchor_sizes!r}: fpn needs one size for each of 5 levels")
        if not isinstance(self.train_data, list) or not all(isinstance(e, dict) and "split" in e for e in self.train_data):
            raise ConfigError("detection.train_data: expected a list of {split: ..., options: {...}}")
        if not isinstance(self.test_data, dict) or "split" not in self.test_data:
            raise ConfigError("detection.test_data: expected {split: ..., options: {...}}")


_SMALL_RPN = {"rpn_pre_nms_train": 600, "rpn_pre_nms_test": 300, "rpn_post_nms_train": 128,
              "rpn_post_nms_test": 64, "rpn_batch_per_image": 64, "roi_batch_per_image": 64}


PROFILES: dict[str, dict] = {
    "paper": {},
    # CPU-feasible, on the project's VOC2007 subset (250 train, 250 test images) at ~1/4 of the
    # reference image size (CIFAR-sized networks; a binary 32 px ReActNet has stride 4 at res4,
    # so its maps stay large); lr scaled linearly with the batch (0.02 * 4 / 16).
    "mini": {"root": "../shared/data/voc2007", "train_data": [{"split": "train", "options": {}}],
             "test_data": {"split": "test", "options": {}}, "train_sizes": [160, 192, 224],
             "test_size": 192, "max_size": 320, "batch_size": 4, "lr": 0.005, "iterations": 60,
             "milestones": [45, 55], "warmup_iters": 10, "trials": 1, **_SMALL_RPN},
    # Seconds on a CPU: the generated boxes of `synthetic_det` at 64 px.
    "smoke": {"dataset": "synthetic_det", "root": None,
              "train_data": [{"split": "train", "options": {"num_images": 64, "image_size": 64}}],
              "test_data": {"split": "test", "options": {"num_images": 32, "image_size": 64}},
              "train_sizes": [64], "test_size": 64, "max_size": 128, "batch_size": 4,
              "lr": 0.02, "iterations": 30, "milestones": [24], "warmup_iters": 5,
              "anchor_sizes": [16, 32, 64], "pooler_resolution": 8, "trials": 2, "log_every": 10,
              **_SMALL_RPN},
}


def make_config(profile: str = "paper", overrides: dict | None = None) -> DetectionConfig:
    """The profile's settings with `overrides` (a dict of fields) on top."""
    if profile not in PROFILES:
        raise ConfigError(f"profile {profile!r}: expected one of {', '.join(PROFILES)}")
    base = {k: v for k, v in asdict(DetectionConfig()).items()}
    return DetectionConfig.from_dict({**base, **PROFILES[profile], **(overrides or {})})
