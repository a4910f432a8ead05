"""CQ encoders are saved with BatchNorm statistics re-estimated at full precision.

A CQ-A/B/C/Quant encoder only ever runs quantized forwards, and Eq. 9's floor quantizer shifts
values down, so its BatchNorm running statistics describe quantized inputs; every evaluation
reads the encoder at FP. `ContrastiveQuant.finish_training` (called by the engine before
encoder.pt is written) re-estimates them at FP (`common.bn_reestimation`).
"""
import copy
import json

import pytest
import torch
import torch.nn as nn

from common.backbones import build_backbone
from common.bn_reestimation import batchnorms, reestimate_batchnorm
from common.checkpoint import load_checkpoint
from common.engine import FINISH_SEED, Runtime, TrainConfig, _finish_batches
from common.errors import ConfigError
from common.methods.simclr import SimCLR
from common.quant import plain_state_dict, set_precision
from common.views import build_views
from cq.method import ContrastiveQuant
from cq.pretrain import main as pretrain_main
from tests.engine_fixtures import tiny_dataset

SMALL = ["cq.dataset.options.num_images=64", "cq.dataset.options.image_size=16", "cq.train.steps=3",
         "cq.train.batch_size=16", "cq.views.simclr.out_size=16", "cq.views.byol.out_size=16"]


def deterministic_cq(variant="cq_a", batches=20):
    torch.manual_seed(0)
    base = SimCLR(build_backbone("cifar_resnet20", width=0.5), build_views("none", 16, norm="cifar10"),
                  proj_dim=8, hidden_dim=16)
    return ContrastiveQuant(base, variant, "6-8", bn_reestimation_batches=batches)


def image_batches(n=3, size=16):
    data = tiny_dataset(n * size)
    images = torch.stack([data[i][0] for i in range(n * size)])
    return list(images.split(size))


def expected_fp_statistics(backbone: nn.Module, inputs: list[torch.Tensor]) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Per BatchNorm: the mean over the batches of the per-batch channel mean and unbiased variance
    of its input, from a plain full-precision copy run in train mode (the definition, directly)."""
    plain = build_backbone("cifar_resnet20", width=0.5)
    plain.load_state_dict(plain_state_dict(backbone))
    plain.train()
    seen: dict[nn.Module, list[tuple[torch.Tensor, torch.Tensor]]] = {m: [] for m in batchnorms(plain)}

    def record(module, args):
        x = args[0].double()
        seen[module].append((x.mean(dim=(0, 2, 3)), x.var(dim=(0, 2, 3), unbiased=True)))

    hooks = [m.register_forward_pre_hook(record) for m in seen]
    with torch.no_grad():
        for x in inputs:
            plain(x)
    for h in hooks:
        h.remove()
    return [(torch.stack([m for m, _ in v]).mean(0), torch.stack([s for _, s in v]).mean(0)) for v in seen.values()]


def test_finish_training_sets_the_fp_statistics_of_the_training_batches():
    cq = deterministic_cq()
    batches = image_batches()
    view = cq.base.views[0]
    # give BatchNorm the statistics of quantized forwards, as CQ training does
    cq.train()
    with torch.no_grad():
        for bits in (6, 7, 8, 6, 7, 8):
            set_precision(cq.base.backbone, bits)
            cq.base.backbone(view(batches[0], None))
    set_precision(cq.base.backbone, None)
    quantized_stats = [m.running_mean.clone() for m in batchnorms(cq.base.backbone)]

    cq.finish_training(lambda: iter(batches), torch.Generator().manual_seed(0))
    expected = expected_fp_statistics(cq.base.backbone, [view(b, None) for b in batches])
    norms = batchnorms(cq.base.backbone)
    assert len(norms) == len(expected) == 21
    for bn, (mean, var) in zip(norms, expected):
        torch.testing.assert_close(bn.running_mean.double(), mean, rtol=1e-4, atol=1e-5)
        torch.testing.assert_close(bn.running_var.double(), var, rtol=1e-4, atol=1e-5)
        assert bn.momentum == 0.1  # restored
    assert cq.bn_reestimation == {"done": True, "precision": "fp", "batches": 3, "images": 48}
    assert cq.summary()["bn_reestimation"]["done"] is True
    # the quantized forwards had really left other statistics behind
    shift = max((a - m.running_mean).abs().max().item() for a, m in zip(quantized_stats, norms))
    assert shift > 1e-2
    # the weights are untouched and the encoder is left at full precision
    assert all(layer.bits is None for layer in cq.base.backbone.modules() if hasattr(layer, "bits"))


def test_reestimation_is_off_for_the_baseline_and_when_asked():
    for variant, batches, reason in (("baseline", 20, "baseline: FP forwards only"), ("cq_c", 0, "off")):
        cq = deterministic_cq(variant, batches)
        before = copy.deepcopy(cq.base.backbone.state_dict())
        cq.finish_training(lambda: iter(image_batches()), torch.Generator())
        assert cq.bn_reestimation == {"done": False, "reason": reason}
        assert all(torch.equal(before[k], v) for k, v in cq.base.backbone.state_dict().items())
    with pytest.raises(ConfigError, match="bn_reestimation"):
        deterministic_cq("cq_a", -1)


def test_switchable_batchnorm_keeps_its_per_width_copies():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.BatchNorm2d(4))
    untouched = net[2]
    net.forward = lambda x: net[1](net[0](x))  # the second BatchNorm is never reached
    untouched.running_mean.fill_(3.0)
    assert reestimate_batchnorm(net, [torch.randn(4, 3, 6, 6) for _ in range(2)]) == 2
    assert torch.all(untouched.running_mean == 3.0) and not torch.all(net[1].running_mean == 0)


def test_cli_saves_the_fp_reestimated_encoder_and_records_it(tmp_path):
    on, off = tmp_path / "on", tmp_path / "off"
    args = ["--method", "simclr", "--variant", "cq_c", "--backbone", "cifar_resnet20"]
    assert pretrain_main([*args, "--out", str(on), *SMALL]) == 0
    assert pretrain_main([*args, "--out", str(off), *SMALL, "cq.bn_reestimation.enabled=false"]) == 0
    record = json.loads((on / "metrics.json").read_text())["method"]["bn_reestimation"]
    assert record == {"done": True, "precision": "fp", "batches": 4, "images": 64}  # one epoch of 64
    assert json.loads((off / "metrics.json").read_text())["method"]["bn_reestimation"] == {"done": False, "reason": "off"}

    saved_on, saved_off = (load_checkpoint(d / "encoder.pt")["state_dict"] for d in (on, off))
    running = [k for k in saved_on if k.endswith(("running_mean", "running_var"))]
    weights = [k for k in saved_on if k not in running and not k.endswith("num_batches_tracked")]
    assert all(torch.equal(saved_on[k], saved_off[k]) for k in weights)  # the same training
    assert any(not torch.allclose(saved_on[k], saved_off[k]) for k in running)

    # the saved statistics are exactly an FP re-estimation of the "off" encoder on the same batches
    backbone = build_backbone("cifar_resnet20", width=0.25)
    backbone.load_state_dict(saved_off)
    views = build_views("simclr", 16, strength=0.5, blur=False, norm="cifar10")
    cfg = TrainConfig(batch_size=16, steps=3)
    dataset_args = dict(num_images=64, image_size=16, seed=0)
    from common.data import build_dataset
    dataset = build_dataset("synthetic", None, "train", **dataset_args)
    generator = torch.Generator().manual_seed(cfg.seed * 1000 + FINISH_SEED)
    batches = _finish_batches(dataset, 16, cfg, Runtime(torch.device("cpu")))
    reestimate_batchnorm(backbone, (views[0](b, generator) for b in batches))
    for key in running:
        torch.testing.assert_close(backbone.state_dict()[key], saved_on[key], rtol=0, atol=0)
