"""Tiny, fast pieces shared by the tests (engine, methods, evaluation suites, torchrun runs)."""
import os
import subprocess
import sys
import time
from pathlib import Path

import torch

from common.backbones import build_backbone
from common.checkpoint import save_checkpoint
from common.data import build_dataset
from common.engine import TrainConfig
from common.methods.simclr import SimCLR
from common.views import build_views
from tests.seeds import seed


def tiny_dataset(num_images: int = 64, split: str = "train", data_seed: int = 0):
    return build_dataset("synthetic", None, split, num_images=num_images, image_size=16,
                         seed=seed(data_seed))


def tiny_simclr(deterministic_views: bool = False) -> SimCLR:
    torch.manual_seed(seed(0))
    backbone = build_backbone("cifar_resnet20", width=0.25)
    views = (build_views("none", 16, norm="cifar10") if deterministic_views
             else build_views("simclr", 16, strength=0.5, blur=False, norm="cifar10"))
    return SimCLR(backbone, views, proj_dim=8, hidden_dim=16)


def tiny_config(**overrides) -> TrainConfig:
    settings = dict(batch_size=16, steps=12, optimizer="lars", lr=0.3, weight_decay=1e-6,
                    warmup_steps=2, ckpt_every=3, log_every=2, num_classes=10, progress=False)
    settings.update(overrides)
    return TrainConfig(**settings)


def write_encoder(path, name: str = "cifar_resnet20", seed: int = 0, backbone=None, **kwargs):
    """An encoder.pt as the engine writes it (backbone name, options, weights); returns the
    backbone in eval mode. Default: a freshly initialised CIFAR ResNet-20 at width 0.5."""
    kwargs = kwargs or {"width": 0.5}
    if backbone is None:
        torch.manual_seed(seed)
        backbone = build_backbone(name, **kwargs)
    save_checkpoint({"backbone": name, "backbone_kwargs": kwargs, "state_dict": backbone.state_dict()}, path)
    return backbone.eval()


REPO = Path(__file__).resolve().parents[1]


def clone_repo(dest: Path) -> tuple[Path, dict]:
    """A git clone of this repository (its committed state) and the environment to run its
    pipeline in: the venv's tools first on PATH, a git identity for `dvc exp`, one thread."""
    bindir = Path(sys.executable).parent
    env = {**os.environ, "PATH": f"{bindir}{os.pathsep}{os.environ['PATH']}",
           "GIT_AUTHOR_NAME": "test", "GIT_AUTHOR_EMAIL": "test@localhost",
           "GIT_COMMITTER_NAME": "test", "GIT_COMMITTER_EMAIL": "test@localhost",
           "OMP_NUM_THREADS": "1"}
    subprocess.run(["git", "clone", "--quiet", str(REPO), str(dest)], check=True, env=env)
    return dest, env


# A subprocess that runs longer than this has hung: on a loaded 2-core machine the smoke `dvc repro`
# takes 5-25 minutes, so the guard catches hangs only, never a slow machine.
HANG_GUARD_S = 3 * 3600
TIMINGS: list[tuple[str, float]] = []  # (what, seconds), printed at the end of the session


def run_timed(what: str, cmd: list[str], **kwargs) -> subprocess.CompletedProcess:
    """subprocess.run with the hang guard; its wall time is printed in pytest's summary."""
    start = time.perf_counter()
    try:
        return subprocess.run(cmd, capture_output=True, text=True, timeout=HANG_GUARD_S, **kwargs)
    finally:
        TIMINGS.append((what, time.perf_counter() - start))
