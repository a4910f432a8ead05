"""An untrained network as the runs of a seed start it: CQ Table 8's "No SSL Training", and the
reference of the claims study's sanity line (a trained arm must beat it).

    python -m common.random_init --backbone cifar_resnet20 --out runs/cq/random_init-cifar_resnet20/s0 \
        [--section cq | burn] [--params params.yaml] [key=value ...]

Writes encoder.pt (the backbone as `cq.pretrain` or, with `--section burn`, `burn.pretrain` builds
it before its first step: same `seed`, same `<section>.backbone_options`, so the same weights; a
binary network fully binary, as a run ends) and metrics.json (status ok, step 0, provenance). The
evaluation suites then fine-tune or probe it like any pretrained encoder, which is what CQ's "No
SSL Training" rows report (fine-tuning from random weights).
"""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

import torch

from common.backbones import build_backbone
from common.binary import binary_convs, set_binary_stage
from common import runs
from common.checkpoint import write_json
from common.config import ArgumentParser, cli_main, load_params, section, seed_of
from common.runs import ENCODER, METRICS
from common.errors import ConfigError
from common.provenance import provenance


SECTIONS = ("cq", "burn")


def run(params: dict, backbone_name: str, out: str | Path, part: str = "cq") -> dict:
    if part not in SECTIONS:
        raise ConfigError(f"--section {part!r}: expected one of {', '.join(SECTIONS)}")
    cfg = section(params, part)
    options = (cfg.get("backbone_options") or {}).get(backbone_name) or {}
    torch.manual_seed(seed_of(params))  # as cq.pretrain and burn.pretrain seed before building
    backbone = build_backbone(backbone_name, **options)
    stage = 2 if binary_convs(backbone) else None
    if stage:
        set_binary_stage(backbone, stage)
    out = Path(out)
    runs.write_encoder(out / ENCODER, {"backbone": backbone_name, "backbone_kwargs": dict(options), "method": "none",
                                       "variant": "random_init", "binary_stage": stage}, backbone.state_dict())
    metrics = {"status": runs.OK, "step": 0, "final_loss": None,
               "method": {"name": "random_init", "backbone": backbone_name},
               "provenance": provenance({part: cfg, "seed": seed_of(params), "backbone": backbone_name},
                                        torch.device("cpu"), stage="common.random_init",
                                        profile=params.get("profile", "unknown"))}
    write_json(metrics, out / METRICS)
    return metrics


@cli_main
def main(argv: Sequence[str] | None = None) -> int:
    parser = ArgumentParser(prog="python -m common.random_init", description=__doc__.splitlines()[0])
    parser.add_argument("--backbone", required=True)
    parser.add_argument("--section", default="cq", help="whose backbone_options: cq (default) or burn")
    parser.add_argument("--out", required=True)
    parser.add_argument("--params", default="params.yaml")
    parser.add_argument("overrides", nargs="*", help="key.sub=value settings")
    args = parser.parse_args(argv)
    params = load_params(args.params, args.overrides)
    run(params, args.backbone, args.out, args.section)
    print(f"{args.out}: untrained {args.backbone} (seed {params.get('seed', 0)})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
