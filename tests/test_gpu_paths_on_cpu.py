"""The engine's GPU-default code paths, run on the CPU: bf16 autocast and channels_last.

On a GPU the engine turns both on by default (`amp: auto`, `channels_last: auto`). Here they are
forced on (`amp="bf16"`, `channels_last="on"`) for a short CQ run and a short BURN run, so these
paths run in every test session and not for the first time on a rented GPU. Each run must end
`ok` with finite losses close to the same run in fp32 / contiguous memory, and hooks prove that
autocast and the memory format really were in force inside the networks.
"""
import pytest
import torch
import torch.nn as nn

from burn.method import BURN
from common.backbones import build_backbone
from common.engine import train
from common.methods.simclr import SimCLR
from common.quant import QuantConv2d, QuantLinear
from common.views import build_views
from cq.method import ContrastiveQuant
from tests.engine_fixtures import tiny_config, tiny_dataset
from tests.seeds import seed

GPU_DEFAULTS = dict(amp="bf16", channels_last="on")
PLAIN = dict(amp="off", channels_last="off")


class LayerProbe:
    """Forward hooks on every Conv2d / Linear: (output dtype, input is 4-d channels_last) per call,
    kept apart for plain layers (`fp`) and quantizing layers at q < 32 bits (`quant`)."""

    def __init__(self, model: nn.Module):
        self.fp, self.quant = [], []
        self.handles = [m.register_forward_hook(self.hook) for m in model.modules()
                        if isinstance(m, (nn.Conv2d, nn.Linear))]

    def hook(self, module, inputs, output):
        x = inputs[0]
        record = (output.dtype, x.dim() == 4 and x.is_contiguous(memory_format=torch.channels_last))
        quantizing = isinstance(module, (QuantConv2d, QuantLinear)) and module.bits is not None
        (self.quant if quantizing else self.fp).append((type(module).__name__, *record))

    def convs(self, records):
        return [r for r in records if r[0].endswith("Conv2d")]

    def remove(self):
        for h in self.handles:
            h.remove()

    def stop_after(self, last_step: int):
        """An engine callback that stops recording after the last training step (the FP
        BatchNorm re-estimation of CQ, after training, runs outside autocast by design)."""
        return lambda step, state: self.remove() if step == last_step else None


def cq_run(tmp_path, **engine):
    torch.manual_seed(seed(0))
    # Width 0.5, not 0.25: torch 2.14.1's oneDNN backward of a channels_last 1x1 stride-2 conv with
    # 4 input channels corrupts the heap on one CPU thread (README, "Training engine").
    backbone = build_backbone("cifar_resnet20", width=0.5)
    base = SimCLR(backbone, build_views("simclr", 16, strength=0.5, blur=False, norm="cifar10"),
                  proj_dim=8, hidden_dim=16)
    method = ContrastiveQuant(base, "cq_c", "6-16")
    probe = LayerProbe(method)
    losses = []
    metrics = train(method, tiny_dataset(64), tiny_config(steps=4, seed=seed(0), **engine), tmp_path,
                    callbacks=[lambda s, st: losses.append(st.last_loss), probe.stop_after(4)])
    return metrics, losses, probe


def burn_run(tmp_path, **engine):
    torch.manual_seed(seed(0))
    teacher = build_backbone("resnet18", width=0.125, cifar_stem=True)
    student = build_backbone("reactnet_a", width=0.125, small_images=True)
    method = BURN(student, teacher, build_views("burn", 16, norm="cifar10"), stage=1, classifier_dim=16)
    probe = LayerProbe(method.backbone)
    losses = []
    cfg = tiny_config(steps=4, optimizer="adam", lr=1e-3, weight_decay=0.0, warmup_steps=0,
                      num_classes=None, seed=seed(0), **engine)
    metrics = train(method, tiny_dataset(64), cfg, tmp_path,
                    callbacks=[lambda s, st: losses.append(st.last_loss), probe.stop_after(4)])
    return metrics, losses, probe


@pytest.mark.parametrize("run", [cq_run, burn_run], ids=["cq_c", "burn"])
def test_bf16_autocast_and_channels_last_through_the_engine(run, tmp_path):
    metrics, losses, probe = run(tmp_path / "gpu_defaults", **GPU_DEFAULTS)
    assert metrics["status"] == "ok" and metrics["step"] == 4
    assert len(losses) == 4 and all(torch.isfinite(torch.tensor(losses)))
    # autocast was on: the plain layers computed in bf16 ...
    assert probe.fp and all(dtype == torch.bfloat16 for _, dtype, _ in probe.fp)
    # ... the quantizing ones in fp32, so that q bits survive (common.quant.exact_fp32) ...
    assert all(dtype == torch.float32 for _, dtype, _ in probe.quant)
    # ... and every convolution read a channels_last input
    convs = probe.convs(probe.fp + probe.quant)
    assert convs and all(cl for _, _, cl in convs)

    plain_metrics, plain_losses, plain_probe = run(tmp_path / "plain", **PLAIN)
    assert plain_metrics["status"] == "ok"
    assert all(dtype == torch.float32 for _, dtype, _ in plain_probe.fp + plain_probe.quant)
    assert not any(cl for _, _, cl in plain_probe.convs(plain_probe.fp + plain_probe.quant))
    # the same first step in fp32 (same weights, same views): equal to bf16 precision
    assert losses[0] == pytest.approx(plain_losses[0], rel=5e-2)
    print(f"{run.__name__}: losses bf16+channels_last {losses} vs fp32 {plain_losses}")
