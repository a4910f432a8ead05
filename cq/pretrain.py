"""Pretrain with Contrastive Quant (or its plain SimCLR / BYOL baseline).

    python -m cq.pretrain --method simclr --variant cq_c --backbone cifar_resnet20 \
        --out runs/cq/simclr-cq_c-cifar_resnet20/s0 [--params params.yaml] [key=value ...]

Reads the top-level `precision` (e.g. "6-16") and the `cq` section of the parameter file, with
`key.sub=value` overrides (e.g. `precision=4-16 cq.train.steps=100`). Writes, under --out:
encoder.pt, checkpoint.pt, metrics.json (status, precision set and how often each width was
drawn, provenance) and dvclive/ curves. Under `torchrun --nproc_per_node=N -m cq.pretrain ...`
it trains with DDP; the batch size is the global batch.
"""
from __future__ import annotations

from typing import Sequence

import torch

from common.backbones import build_backbone
from common.config import ArgumentParser, cli_main, load_params, section, seed_of, train_settings
from common.data import build_dataset
from common.engine import TrainConfig, train
from common.errors import ConfigError, settings_of
from common.methods import registry
from common.quant import QuantConfig
from common.schema import default_of
from common.views import build_views
from cq.method import BN_REESTIMATION_BATCHES, ContrastiveQuant
from cq.objectives import VARIANTS, check_variant

def build_views_for(cfg: dict, method: str, variant: str):
    """The base method's view recipe; CQ-Quant uses no input augmentation (CQ Sec. 4.5)."""
    options = dict(section(cfg, f"views.{method}", where="cq"))
    recipe = options.pop("recipe")
    if variant == "cq_quant":
        return build_views("none", options["out_size"], norm=options.get("norm", "imagenet"))
    return build_views(recipe, **options)


def build_cq(params: dict, method: str, variant: str, backbone_name: str) -> ContrastiveQuant:
    """The CQ method of one (method, variant, backbone) run, from the parameter dict."""
    cfg = section(params, "cq")
    if method not in registry.cq_methods():
        raise ConfigError(f"--method: expected one of {registry.cq_methods()} (the registered methods with "
                          f"Contrastive Quant's NCE), got {method!r}")
    check_variant(variant)
    seed = seed_of(params)
    torch.manual_seed(seed)  # the same initial weights for every variant of a comparison
    with settings_of(f"cq.backbone_options.{backbone_name}"):
        backbone = build_backbone(backbone_name, **cfg.get("backbone_options", {}).get(backbone_name, {}))
    with settings_of(f"cq.views.{method}"):
        views = build_views_for(cfg, method, variant)
    with settings_of(f"cq.{method}"):
        base = registry.build_method(method, backbone, views, **cfg.get(method, {}))
    q = {name: (cfg.get("quant") or {}).get(name, default_of(f"cq.quant.{name}"))
         for name in ("mode", "grad_bits", "switchable_bn", "keep_fp", "target_precision")}
    quant = QuantConfig(mode=q["mode"], grad_bits=q["grad_bits"], switchable_bn=bool(q["switchable_bn"]))
    return ContrastiveQuant(base, variant, str(params.get("precision", default_of("precision"))), quant,
                            keep_fp=q["keep_fp"], target_precision=q["target_precision"],
                            seed=seed, bn_reestimation_batches=bn_reestimation_batches(cfg))


def bn_reestimation_batches(cfg: dict) -> int:
    """`cq.bn_reestimation: {enabled: true, batches: 20}` -> batches to use (0 = off). At most one
    epoch of the training set is read, so a small set may give fewer batches."""
    bn = cfg.get("bn_reestimation") or {}
    if not isinstance(bn, dict) or set(bn) - {"enabled", "batches"}:
        raise ConfigError(f"cq.bn_reestimation: expected {{enabled: true|false, batches: N}}, got {bn!r}")
    enabled = bn.get("enabled", default_of("cq.bn_reestimation.enabled"))
    if not isinstance(enabled, bool):
        raise ConfigError(f"cq.bn_reestimation.enabled: expected true or false, got {enabled!r}")
    return bn.get("batches", BN_REESTIMATION_BATCHES) if enabled else 0


def run(params: dict, method: str, variant: str, backbone_name: str, out: str) -> dict:
    cfg = section(params, "cq")
    cq = build_cq(params, method, variant, backbone_name)
    data = section(cfg, "dataset", where="cq")
    root = data.get("root", params.get("data", {}).get("root"))
    dataset = build_dataset(data["name"], root, data.get("split", default_of("cq.dataset.split")),
                            **data.get("options", {}))
    train_cfg = TrainConfig.from_dict({"seed": seed_of(params), **train_settings(params, "cq", method)}, where="cq.train")
    run_params = {"precision": params.get("precision"), "cq": cfg, "seed": seed_of(params),
                  "method": method, "variant": variant, "backbone": backbone_name}
    meta = {"backbone": backbone_name,
            "backbone_kwargs": cfg.get("backbone_options", {}).get(backbone_name, {}),
            "method": method, "variant": variant}
    info = {"dataset": data["name"], "profile": params.get("profile", "unknown"), "stage": "cq.pretrain"}
    return train(cq, dataset, train_cfg, out, params=run_params, encoder_meta=meta, run_info=info)


@cli_main
def main(argv: Sequence[str] | None = None) -> int:
    parser = ArgumentParser(prog="python -m cq.pretrain", description=__doc__.splitlines()[0])
    parser.add_argument("--method", required=True, choices=registry.cq_methods())
    parser.add_argument("--variant", required=True, choices=VARIANTS)
    parser.add_argument("--backbone", required=True)
    parser.add_argument("--out", required=True)
    parser.add_argument("--params", default="params.yaml")
    parser.add_argument("overrides", nargs="*", help="key.sub=value settings, e.g. precision=4-16")
    args = parser.parse_args(argv)
    params = load_params(args.params, args.overrides)
    metrics = run(params, args.method, args.variant, args.backbone, args.out)
    print(f"{args.out}: {metrics['status']} at step {metrics['step']}, loss {metrics['final_loss']}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
