"""The "No SSL Training" reference of CQ Table 8: the encoder every CQ run starts from, untrained.

    python -m cq.random_init --backbone cifar_resnet20 --out runs/cq/random_init-cifar_resnet20/s0 \
        [--params params.yaml] [key=value ...]

Writes encoder.pt (the backbone as `cq.pretrain` builds it before its first step: same `seed`, same
`cq.backbone_options`, so the same weights) and metrics.json (status ok, step 0, provenance). The
evaluation suites then fine-tune or probe it like any pretrained encoder, which is what the
paper's "No SSL Training" rows report (fine-tuning from random weights).
"""
from __future__ import annotations

import argparse
from pathlib import Path
from typing import Sequence

import torch

from common.backbones import build_backbone
from common.checkpoint import save_checkpoint, write_json
from common.config import cli_main, load_params, section, seed_of
from common.engine import ENCODER, METRICS
from common.provenance import provenance


def run(params: dict, backbone_name: str, out: str | Path) -> dict:
    cfg = section(params, "cq")
    options = (cfg.get("backbone_options") or {}).get(backbone_name) or {}
    torch.manual_seed(seed_of(params))  # as cq.pretrain.build_cq seeds before building
    backbone = build_backbone(backbone_name, **options)
    out = Path(out)
    save_checkpoint({"backbone": backbone_name, "backbone_kwargs": dict(options), "method": "none",
                     "variant": "random_init", "state_dict": backbone.state_dict()}, out / ENCODER)
    metrics = {"status": "ok", "step": 0, "final_loss": None,
               "method": {"name": "random_init", "backbone": backbone_name},
               "provenance": provenance({"cq": cfg, "seed": seed_of(params), "backbone": backbone_name},
                                        torch.device("cpu"), stage="cq.random_init",
                                        profile=params.get("profile", "unknown"))}
    write_json(metrics, out / METRICS)
    return metrics


@cli_main
def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m cq.random_init", description=__doc__.splitlines()[0])
    parser.add_argument("--backbone", required=True)
    parser.add_argument("--out", required=True)
    parser.add_argument("--params", default="params.yaml")
    parser.add_argument("overrides", nargs="*", help="key.sub=value settings")
    args = parser.parse_args(argv)
    params = load_params(args.params, args.overrides)
    run(params, args.backbone, args.out)
    print(f"{args.out}: untrained {args.backbone} (seed {params.get('seed', 0)})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
