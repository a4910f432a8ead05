"""Faster R-CNN C4 / FPN on the project's backbones (eval/detection.py): weight loading, the
backbone / box-head split, forward on CPU, the schedule and the flip, and a short training."""
import pytest
import torch

from common import profiles
from eval.detection_config import profile_settings
from common.backbones import build_backbone
from common.engine import Runtime
from common.errors import ConfigError
from eval.detection import (TrainView, build_split, build_train_set, evaluate_detector, lr_factor, make_config,
                            train_detector)
from eval.detection_model import build_c4_detector, build_fpn_detector, load_encoder_network, module_state_dict
from tests.seeds import seed

SMOKE_DETECTION = profile_settings(profiles.load("smoke"))  # the smoke profile's detection settings

CPU = Runtime(torch.device("cpu"))


def _encoder(tmp_path, name, **kwargs):
    torch.manual_seed(1)
    net = build_backbone(name, **kwargs)
    for m in net.modules():  # non-default BN statistics, so loading is visible
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.normal_()
            m.bias.data.normal_()
    path = tmp_path / f"{name}.pt"
    torch.save({"backbone": name, "backbone_kwargs": kwargs, "state_dict": net.state_dict()}, path)
    return path, net.state_dict()


def _assert_same(part: dict, reference: dict, prefix: str = ""):
    for key, value in part.items():
        torch.testing.assert_close(value, reference[prefix + key], rtol=0, atol=0)


def test_c4_weights_equal_the_checkpoint_and_forward_returns_detections(tmp_path):
    path, state = _encoder(tmp_path, "resnet50", width=0.125)
    net, meta = load_encoder_network(path)
    assert meta["backbone"] == "resnet50"
    model = build_c4_detector(net, 20, make_config(SMOKE_DETECTION))
    body = model.backbone.body.state_dict()
    assert {k.split(".")[0] for k in body} == {"conv1", "bn1", "layer1", "layer2", "layer3"}
    _assert_same(body, state)
    res5 = model.roi_heads.box_head.res5.state_dict()
    assert {k.split(".")[0] for k in res5} == {"layer4"}
    _assert_same(res5, state)
    assert len(body) + len(res5) == len([k for k in state if not k.startswith("fc.")])
    assert model.feature_stride == 16 and model.roi_heads.box_head.out_channels == 256
    assert isinstance(model.roi_heads.box_head.norm, torch.nn.BatchNorm2d)  # the extra BN
    assert all(p.requires_grad for p in model.parameters())  # nothing frozen
    model.eval()
    out = model([torch.rand(3, 64, 80), torch.rand(3, 72, 64)])
    assert len(out) == 2
    for o in out:
        assert set(o) == {"boxes", "labels", "scores"}
        n = len(o["scores"])
        assert o["boxes"].shape == (n, 4) and o["labels"].shape == (n,)
        if n:
            assert o["labels"].min() >= 1 and o["labels"].max() <= 20
    assert (out[0]["boxes"][:, 2] <= 80 + 1e-4).all()  # boxes in the original image's pixels


def test_reactnet_adapter_split_and_strides(tmp_path):
    path, state = _encoder(tmp_path, "reactnet_a", width=0.125)
    net, _ = load_encoder_network(path)
    model = build_c4_detector(net, 20, make_config(SMOKE_DETECTION))
    assert model.feature_stride == 16  # stem (2) x blocks 1, 3, 5 (2 each) before blocks.11
    body, head = module_state_dict(model.backbone.body), module_state_dict(model.roi_heads.box_head.res5)
    assert {".".join(k.split(".")[:2]) for k in head} == {"blocks.11", "blocks.12"}
    assert "blocks.10.bn_3x3.running_mean" in body and "stem.conv.weight" in body
    _assert_same(body, state)
    _assert_same(head, state)
    model.eval()
    assert set(model([torch.rand(3, 64, 64)])[0]) == {"boxes", "labels", "scores"}
    small, _ = load_encoder_network(_encoder(tmp_path, "reactnet_a", width=0.125, small_images=True)[0])
    assert build_c4_detector(small, 20, make_config(SMOKE_DETECTION)).feature_stride == 4


def test_fpn_variant_and_bad_inputs(tmp_path):
    cfg = make_config({**SMOKE_DETECTION, "layout": "fpn", "anchor_sizes": [8, 16, 32, 64, 128]})
    model = build_fpn_detector(build_backbone("resnet18", width=0.125), 20, cfg).eval()
    assert set(model([torch.rand(3, 64, 64)])[0]) == {"boxes", "labels", "scores"}
    with pytest.raises(ConfigError, match="layout=fpn"):
        build_fpn_detector(build_backbone("cifar_resnet20", width=0.25), 20, cfg)
    with pytest.raises(ConfigError, match="unknown setting"):
        make_config({**SMOKE_DETECTION, "iters": 3})
    bad = tmp_path / "bad.pt"
    torch.save({"backbone": "resnet18", "backbone_kwargs": {"width": 0.25},
                "state_dict": build_backbone("resnet18", width=0.125).state_dict()}, bad)
    with pytest.raises(ConfigError, match="do not fit"):
        load_encoder_network(bad)


def test_lr_schedule_is_detectron2_warmup_multistep():
    cfg = make_config()
    assert lr_factor(0, cfg) == pytest.approx(0.001)
    assert lr_factor(50, cfg) == pytest.approx(0.001 * 0.5 + 0.5)
    assert lr_factor(100, cfg) == 1.0 and lr_factor(17999, cfg) == 1.0
    assert lr_factor(18000, cfg) == pytest.approx(0.1) and lr_factor(22000, cfg) == pytest.approx(0.01)
    assert cfg.train_sizes == [480 + 32 * i for i in range(11)] and cfg.test_size == 800


def test_flip_mirrors_image_and_boxes():
    image = torch.arange(2 * 3 * 5, dtype=torch.uint8).reshape(3, 2, 5)
    target = {"boxes": torch.tensor([[1.0, 0.0, 3.0, 2.0]]), "labels": torch.tensor([4]),
              "difficult": torch.tensor([True])}
    view = TrainView([(image, target)], keep_difficult=True)
    flipped, t = view[(0, True)]
    torch.testing.assert_close(flipped, image.flip(-1).float() / 255)
    torch.testing.assert_close(t["boxes"], torch.tensor([[2.0, 0.0, 4.0, 2.0]]))  # x -> 5 - x
    assert len(TrainView([(image, target)], keep_difficult=False)[(0, False)][1]["boxes"]) == 0


@pytest.mark.learning
def test_short_training_on_synthetic_boxes_raises_ap50():
    # Two primary categories (extras are still any of the 20): 80 iterations of batch 4 at 64 px.
    options = {"image_size": 64, "num_classes": 2, "seed": seed(0)}
    cfg = make_config({**SMOKE_DETECTION, "iterations": 80, "milestones": [64], "trials": 1, "log_every": 1000,
                                "train_data": [{"split": "train", "options": {"num_images": 64, **options}}],
                                "test_data": {"split": "test", "options": {"num_images": 32, **options}}})
    train_set, test_set = build_train_set(cfg), build_split(cfg, cfg.test_data)
    torch.manual_seed(seed(0))
    model = build_c4_detector(build_backbone("resnet18", width=0.125), 20, cfg)
    before = evaluate_detector(model, test_set, cfg, CPU)
    status = train_detector(model, train_set, cfg, seed(0), CPU, log=lambda _: None)
    after = evaluate_detector(model, test_set, cfg, CPU)
    primary = [name for name in train_set.classes[:2]]
    primary_before = sum(before["per_class"][c]["AP50"] for c in primary) / 2
    primary_after = sum(after["per_class"][c]["AP50"] for c in primary) / 2
    print(f"AP50 untrained {before['AP50']:.2f} -> trained {after['AP50']:.2f}; "
          f"primary classes {primary_before:.2f} -> {primary_after:.2f}")
    assert status["status"] == "ok" and status["step"] == 80
    assert before["AP50"] < 1.0 and primary_before < 1.0
    assert primary_after > 30.0
    assert after["AP50"] > before["AP50"] + 3.0
