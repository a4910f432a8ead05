"""Export a ResNet encoder of this project to detectron2's weight format (docs/protocols.md sec. 3).

    python -m eval.export_detectron2 runs/.../encoder.pt r50_d2.pkl

Input: an `encoder.pt` (common/engine.py) of a torchvision-named ResNet (`resnet18`, `resnet34`,
`resnet50`: keys conv1, bn1, layer1..layer4), or a bare state dict with those keys. Output: a
pickle {"model": {name: numpy array}, "__author__": ..., "matching_heuristics": True}, the
format detectron2's checkpointer reads for third-party weights.

Key scheme (detectron2's ResNet naming):
    conv1.weight                    -> stem.conv1.weight
    bn1.{weight,bias,running_mean,running_var} -> stem.conv1.norm.{...}
    layer{N}.{B}.conv{K}.weight     -> res{N+1}.{B}.conv{K}.weight
    layer{N}.{B}.bn{K}.*            -> res{N+1}.{B}.conv{K}.norm.*
    layer{N}.{B}.downsample.0.weight -> res{N+1}.{B}.shortcut.weight
    layer{N}.{B}.downsample.1.*     -> res{N+1}.{B}.shortcut.norm.*
`num_batches_tracked` counters, a classifier `fc.*`, and the activation statistics of quantizing
layers (`act_min`, `act_range`, `act_tracked`) are not weights of a detectron2 backbone and are
left out. Anything else is an error.

How a detectron2 user runs the reference protocol with it (BURN Table 1 / CQ Table 3; the
settings are docs/protocols.md sec. 3, the same config MoCo published with its detection code,
`pascal_voc_R_50_C4_24k_moco.yaml` in facebookresearch/moco's `detection/` folder):

  1. Install detectron2 and put VOC2007 and VOC2012 under `$DETECTRON2_DATASETS`
     (`VOC2007/`, `VOC2012/`, each with Annotations, ImageSets, JPEGImages).
  2. Export: `python -m eval.export_detectron2 path/to/encoder.pt r50.pkl`.
  3. Use a config equivalent to the reference one:
       MODEL.META_ARCHITECTURE GeneralizedRCNN, MODEL.BACKBONE.NAME build_resnet_backbone,
       MODEL.RESNETS.DEPTH 50, MODEL.RESNETS.NORM SyncBN, MODEL.RESNETS.STRIDE_IN_1X1 False
       (torchvision puts the stride in the 3x3 conv), MODEL.BACKBONE.FREEZE_AT 0,
       MODEL.ROI_HEADS.NAME Res5ROIHeadsExtraNorm (res5 + an extra SyncBN; this head is
       registered by MoCo's `detection/train_net.py`), MODEL.ROI_HEADS.NUM_CLASSES 20,
       MODEL.PIXEL_MEAN [123.675, 116.280, 103.530], MODEL.PIXEL_STD [58.395, 57.120, 57.375],
       INPUT.FORMAT RGB (torchvision's mean / std on 0..255 RGB),
       INPUT.MIN_SIZE_TRAIN (480, 512, ..., 800), INPUT.MIN_SIZE_TEST 800, INPUT.MAX_SIZE 1333,
       DATASETS.TRAIN ('voc_2007_trainval', 'voc_2012_trainval'), DATASETS.TEST ('voc_2007_test',),
       SOLVER.IMS_PER_BATCH 16, SOLVER.BASE_LR 0.02, SOLVER.MAX_ITER 24000,
       SOLVER.STEPS (18000, 22000), SOLVER.WARMUP_ITERS 100, SOLVER.WEIGHT_DECAY 1e-4,
       MODEL.WEIGHTS r50.pkl.
  4. Train and evaluate on 8 GPUs, 5 trials (the papers report the mean):
       python train_net.py --config-file pascal_voc_R_50_C4_24k_moco.yaml --num-gpus 8 \
           MODEL.WEIGHTS r50.pkl OUTPUT_DIR out/trial1
     detectron2's PascalVOCDetectionEvaluator prints AP, AP50, AP75 (what eval/voc_eval.py
     computes for the torchvision pipeline of this project).
  For a ResNet-18/34 encoder also set MODEL.RESNETS.DEPTH 18 / 34 and
  MODEL.RESNETS.RES2_OUT_CHANNELS 64 (BasicBlock ResNets); `matching_heuristics: True` lets
  detectron2's checkpointer align the names if a config renames a stage.
"""
from __future__ import annotations

import pickle
import re
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from common import runs
from common.checkpoint import atomic_write, load_checkpoint
from common.config import ArgumentParser, cli_main
from common.errors import ConfigError

AUTHOR = "contrastive-quant / BURN replication (eval.export_detectron2)"
_SKIP = re.compile(r"(^fc\.|num_batches_tracked$|\.act_(min|range|tracked)$)")
_BN = r"(weight|bias|running_mean|running_var)"
# (pattern inside a residual block, detectron2 name inside the block)
_BLOCK_RULES = ((r"conv(\d)\.weight", r"conv\1.weight"),
                (rf"bn(\d)\.{_BN}", r"conv\1.norm.\2"),
                (r"downsample\.0\.weight", "shortcut.weight"),
                (rf"downsample\.1\.{_BN}", r"shortcut.norm.\1"))


def detectron2_name(key: str) -> str:
    """The detectron2 name of one torchvision ResNet state-dict key (ConfigError if none)."""
    if key == "conv1.weight":
        return "stem.conv1.weight"
    m = re.fullmatch(rf"bn1\.{_BN}", key)
    if m:
        return f"stem.conv1.norm.{m.group(1)}"
    m = re.fullmatch(r"layer([1-4])\.(\d+)\.(.+)", key)
    if m:
        stage, block, rest = int(m.group(1)) + 1, m.group(2), m.group(3)
        for pattern, repl in _BLOCK_RULES:
            hit = re.fullmatch(pattern, rest)
            if hit:
                return f"res{stage}.{block}.{hit.expand(repl)}"
    raise ConfigError(f"state dict key {key!r}: not part of a torchvision-named ResNet "
                      "(expected conv1, bn1, layer1..layer4 with convK / bnK / downsample)")


def convert_state_dict(state_dict: dict) -> dict[str, np.ndarray]:
    """torchvision ResNet state dict -> {detectron2 name: float numpy array}."""
    out = {}
    for key, value in state_dict.items():
        if _SKIP.search(key):
            continue
        out[detectron2_name(key)] = value.detach().cpu().numpy()
    stages = {name.split(".")[0] for name in out}
    missing = {"stem", "res2", "res3", "res4", "res5"} - stages
    if missing:
        raise ConfigError(f"state dict: no weights for {sorted(missing)} "
                          "(expected a torchvision ResNet with conv1, bn1, layer1..layer4)")
    return out


def export(checkpoint: str | Path, out: str | Path) -> dict[str, np.ndarray]:
    """Read an encoder.pt (or a bare state dict) and write the detectron2 pickle atomically."""
    ckpt = load_checkpoint(checkpoint)
    if runs.is_encoder(ckpt):  # this project's encoder.pt (else a bare state dict)
        ckpt = runs.check_encoder(ckpt, str(checkpoint))
    state_dict = ckpt.get("state_dict", ckpt)
    if not all(isinstance(v, torch.Tensor) for v in state_dict.values()):
        raise ConfigError(f"{checkpoint}: expected an encoder.pt or a state dict of tensors")
    backbone = ckpt.get("backbone")
    if backbone is not None and backbone not in ("resnet18", "resnet34", "resnet50"):
        raise ConfigError(f"{checkpoint}: backbone {backbone!r} cannot be exported; "
                          "expected resnet18, resnet34 or resnet50")
    model = convert_state_dict(state_dict)
    payload = {"model": model, "__author__": AUTHOR, "matching_heuristics": True}

    def write(tmp: Path) -> None:
        with open(tmp, "wb") as f:
            pickle.dump(payload, f)

    atomic_write(out, write)
    return model


@cli_main
def main(argv: Sequence[str] | None = None) -> int:
    parser = ArgumentParser(prog="python -m eval.export_detectron2",
                                     description="Export a ResNet encoder.pt to detectron2's pickle format.")
    parser.add_argument("checkpoint", help="encoder.pt of a resnet18/34/50 (torchvision names)")
    parser.add_argument("out", help="output .pkl")
    args = parser.parse_args(argv)
    model = export(args.checkpoint, args.out)
    print(f"{args.out}: {len(model)} arrays in detectron2's ResNet naming")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
