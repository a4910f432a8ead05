"""The detection suite's settings: one dataclass whose defaults are the reference protocol (the
paper profile's), with a profile's `eval.suites.detection.args.settings` laid over it
(profiles/smoke.yaml and mini.yaml scale it to a CPU). Both the suite (`eval.detection`) and the detector
(`eval.detection_model`) read it, neither the other."""
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


SUITE = "detection"  # the suite's key under eval.suites; its args.settings are these fields


ARG_SETTINGS = ("dataset", "root", "trials")  # settings the suite's CLI also takes as --flags


def profile_settings(params: dict) -> dict:
    """A parameter file's detection settings, as its suite runs them: `eval.suites.detection.args`'
    dataset, root and trials with its `settings` (none: {}, the reference protocol)."""
    suite = ((params.get("eval") or {}).get("suites") or {}).get(SUITE) or {}
    args = suite.get("args") or {}
    settings = args.get("settings") or {}
    if not isinstance(settings, dict):
        raise ConfigError(f"eval.suites.{SUITE}.args.settings: expected a mapping of settings, got {settings!r}")
    return {**{k: args[k] for k in ARG_SETTINGS if k in args}, **settings}


def make_config(settings: dict | None = None) -> DetectionConfig:
    """The reference protocol with `settings` (a dict of fields: a profile's, the command line's
    overrides) on top."""
    if settings is not None and not isinstance(settings, dict):
        raise ConfigError(f"{SUITE} settings: expected a mapping, got {settings!r}")
    return DetectionConfig.from_dict({**asdict(DetectionConfig()), **(settings or {})})
