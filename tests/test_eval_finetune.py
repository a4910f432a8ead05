"""eval.finetune: k-bit fine-tuning really runs quantized, the BURN 9-point sweep, lr groups,
the CQ presets' epochs, the whole network trains, the CLI."""
import json
from dataclasses import replace

import pytest
import torch
import torch.nn as nn

import eval.finetune as eft
from common.data import build_dataset
from common.quant import QuantConv2d, get_precision, set_precision
from common.views import eval_transform
from eval.core.data import DataSpec
from eval.presets import FINETUNE_PRESETS
from common.predictions import correct
from tests.engine_fixtures import write_encoder

SYN = {"num_images": 40, "image_size": 16}


@pytest.fixture(scope="module")
def encoder(tmp_path_factory):
    path = tmp_path_factory.mktemp("enc") / "encoder.pt"
    write_encoder(path)
    return path


def data(split, n=40):
    return build_dataset("synthetic", None, split, **{**SYN, "num_images": n})


def short(preset="burn", **kw):
    return replace(FINETUNE_PRESETS[preset].train, **{"epochs": 1, "batch_size": 20, **kw})


class QuantProbe:
    """Forward pre-hooks on every quantized conv: the bit-width, train/eval mode and the number of
    distinct values of the quantized input and weight actually used at each call."""

    def __init__(self, model):
        self.calls = []
        self.handles = [m.register_forward_pre_hook(self.hook) for m in model.modules()
                        if isinstance(m, QuantConv2d)]

    def hook(self, module, inputs):
        with torch.no_grad():
            q_in = module.quantized_input(inputs[0])  # floor mode: a pure function of the input
            q_w = module.quantized_weight()
        self.calls.append((module.bits, module.training, q_in.unique().numel(), q_w.unique().numel()))

    def remove(self):
        for h in self.handles:
            h.remove()


def test_four_bit_finetuning_runs_quantized_in_training_and_evaluation(encoder):
    model = eft.build_classifier(encoder, 10, bits=4)
    assert get_precision(model.backbone) == 4
    assert type(model.head) is nn.Linear  # the new layer stays FP (CQ keeps the FC in FP)
    n_quant = sum(isinstance(m, QuantConv2d) for m in model.modules())
    assert n_quant == 21  # CIFAR ResNet-20: stem + 18 block convs + 2 downsample convs, all quantized
    probe = QuantProbe(model)
    result = eft.finetune(model, data("train"), data("test", 20), short(), 10.0, 16, "cifar10")
    probe.remove()
    assert result["status"] == "ok"
    trained = [c for c in probe.calls if c[1]]
    evaluated = [c for c in probe.calls if not c[1]]
    assert len(trained) == 2 * n_quant and len(evaluated) == 1 * n_quant  # 2 batches, 1 test batch
    for bits, _, n_in, n_w in probe.calls:
        assert bits == 4 and n_in <= 2 ** 4 and n_w <= 2 ** 4
    assert max(c[2] for c in probe.calls) > 8  # the levels are really used, not collapsed

    # outputs differ from the same weights at full precision
    x = eval_transform(16, norm="cifar10")(torch.stack([data("test", 8)[i][0] for i in range(8)]))
    model.eval()
    with torch.no_grad():
        q_out = model(x)
        set_precision(model.backbone, None)
        fp_out = model(x)
    assert not torch.allclose(q_out, fp_out, atol=1e-3)


def test_fp_finetuning_has_no_quantized_layer_and_trains_the_whole_network(encoder):
    model = eft.build_classifier(encoder, 10, bits=None)
    assert not any(isinstance(m, QuantConv2d) for m in model.modules())
    before = {k: v.clone() for k, v in model.state_dict().items()}
    eft.finetune(model, data("train"), data("test", 20), short(lr=0.1), 1.0, 16, "cifar10")
    after = model.state_dict()
    for name in ("backbone.conv1.weight", "backbone.layer3.0.conv2.weight", "head.weight"):
        assert not torch.equal(before[name], after[name]), name


def test_head_lr_is_the_backbone_lr_times_the_multiplier(encoder, monkeypatch):
    seen = []
    real = eft.sgd_for

    def spy(preset, groups):
        opt = real(preset, groups)
        seen.append(opt)
        return opt

    monkeypatch.setattr(eft, "sgd_for", spy)
    model = eft.build_classifier(encoder, 10)
    eft.finetune(model, data("train"), data("test", 20), short(lr=0.01), 100.0, 16, "cifar10")
    groups = seen[0].param_groups
    assert [g["base_lr"] for g in groups] == pytest.approx([0.01, 1.0])
    assert groups[0]["weight_decay"] == 5e-4 and groups[0]["momentum"] == 0.9 and not groups[0]["nesterov"]


def test_burn_sweep_records_all_nine_and_keeps_the_best_by_test_top1(encoder, tmp_path):
    spec = DataSpec("synthetic", None, "train", SYN)
    metrics = eft.run_finetune(encoder, spec, spec.with_split("test"), "burn", fraction=0.5, epochs=1,
                               batch_size=20, subset_dir=tmp_path / "subsets")
    grid = [(r["backbone_lr"], r["head_multiplier"]) for r in metrics["runs"]]
    assert grid == [(lr, m) for lr in (0.1, 0.01, 0.001) for m in (1.0, 10.0, 100.0)]
    assert all(r["head_lr"] == pytest.approx(r["backbone_lr"] * r["head_multiplier"]) for r in metrics["runs"])
    best = max(metrics["runs"], key=lambda r: r["top1"])
    assert metrics["best"] == best and metrics["top1"] == best["top1"] and metrics["top5"] == best["top5"]
    # the per-image predictions are the selected run's, kept once
    assert correct(metrics).mean() == pytest.approx(best["top1"]) and all("predictions" not in r for r in metrics["runs"])
    assert metrics["selection"] == "test_top1" and metrics["precision"] == "fp"
    assert metrics["num_labelled"] == 20  # 50% of 40, class-balanced: round(0.5 * 40 / C) per class
    assert metrics["settings"]["gamma"] == 0.2 and metrics["settings"]["weight_decay"] == 5e-4
    assert len(list((tmp_path / "subsets").glob("*.json"))) == 1  # the list is kept for reuse


def test_cq_imagenet_epochs_depend_on_the_label_fraction():
    preset = FINETUNE_PRESETS["cq_imagenet"]
    assert preset.epochs_for(0.1) == 30 and preset.epochs_for(0.01) == 60
    assert FINETUNE_PRESETS["cq"].epochs_for(0.01) == 50 and FINETUNE_PRESETS["cq"].grid() == [(0.1, 1.0)]


def test_cli_writes_metrics_with_precision(encoder, tmp_path):
    out = tmp_path / "ft"
    rc = eft.main(["--encoder", str(encoder), "--dataset", "synthetic", "--options", "{num_images: 40, image_size: 16}",
                   "--out", str(out), "--preset", "cq", "--bits", "4", "--fraction", "0.5", "--epochs", "1",
                   "--batch-size", "20", "--device", "cpu"])
    assert rc == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["precision"] == "4-bit" and metrics["bits"] == 4 and metrics["quant_mode"] == "floor"
    assert len(metrics["runs"]) == 1 and metrics["settings"]["nesterov"] is True
    assert metrics["settings"]["schedule"] == "cosine" and metrics["settings"]["weight_decay"] == 0.0
    assert metrics["provenance"]["stage"] == "eval.finetune"


@pytest.mark.parametrize("extra,needle", [(["--bits", "0"], "--bits"), (["--preset", "x"], "--preset"),
                                          (["--fraction", "2"], "fraction"), (["--lrs", "a,b"], "--lrs")])
def test_cli_bad_input_one_line_exit_2(encoder, tmp_path, capsys, extra, needle):
    rc = eft.main(["--encoder", str(encoder), "--dataset", "synthetic", "--options", "{num_images: 20, image_size: 16}",
                   "--out", str(tmp_path / "o"), "--epochs", "1", *extra])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1 and needle in err[0]
    assert not (tmp_path / "o").exists()
