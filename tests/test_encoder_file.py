"""The encoder file (common.runs.write_encoder / read_encoder): what it records (network, options,
binary stage, the input normalization the run trained with) and that every evaluation uses it."""
import pytest
import torch

from common import runs
from common import profiles
from eval.detection_config import profile_settings
from common.backbones import build_backbone
from common.binary import get_binary_stage, set_binary_stage
from common.errors import ConfigError
from common.views import CIFAR10_MEAN, CIFAR100_MEAN, IMAGENET_MEAN, build_views, norm_label
from eval.core.encoders import load_backbone

SMOKE_DETECTION = profile_settings(profiles.load("smoke"))  # the smoke profile's detection settings

R20 = {"width": 0.25}


def write(path, **meta):
    net = build_backbone("cifar_resnet20", **R20)
    runs.write_encoder(path, {"backbone": "cifar_resnet20", "backbone_kwargs": R20, **meta}, net.state_dict())
    return path


def test_the_file_round_trips_and_a_bad_one_is_one_clear_error(tmp_path):
    read = runs.read_encoder(write(tmp_path / "e.pt", norm="cifar10", method="simclr"))
    assert read["backbone"] == "cifar_resnet20" and read["backbone_kwargs"] == R20 and read["norm"] == "cifar10"
    with pytest.raises(ConfigError, match="an encoder names its network"):
        runs.write_encoder(tmp_path / "x.pt", {"backbone": "cifar_resnet20"}, {})
    assert not (tmp_path / "x.pt").exists()
    for bad, message in (({"model": {}}, "not an encoder file"),
                         ({"backbone": "r", "backbone_kwargs": [1], "state_dict": {}}, "must be a mapping"),
                         ({"backbone": "r", "state_dict": {"w": 1}}, "map names to tensors"),
                         ({"backbone": "r", "state_dict": {}, "binary_stage": 3}, "binary_stage")):
        torch.save(bad, tmp_path / "bad.pt")
        with pytest.raises(ConfigError, match=message):
            runs.read_encoder(tmp_path / "bad.pt")


def test_a_views_normalization_is_recorded_by_name_or_as_numbers():
    assert norm_label(build_views("simclr", 32, norm="cifar10")[0]) == "cifar10"
    assert norm_label(build_views("simclr", 32)[0]) == "imagenet"
    custom = norm_label(build_views("simclr", 32, norm=((0.5, 0.5, 0.5), (0.25, 0.25, 0.25)))[0])
    assert custom == [[0.5, 0.5, 0.5], [0.25, 0.25, 0.25]]


def test_pretraining_records_the_normalization_its_views_used(tmp_path):
    from cq.pretrain import main

    assert main(["--method", "simclr", "--variant", "baseline", "--backbone", "cifar_resnet20", "--out",
                 str(tmp_path / "r"), "--params", "profiles/smoke.yaml", "cq.train.steps=1",
                 "cq.views.simclr.norm=cifar100"]) == 0
    assert runs.read_encoder(tmp_path / "r" / "encoder.pt")["norm"] == "cifar100"


def test_features_use_the_encoders_normalization_unless_the_suite_names_one(tmp_path):
    from eval.core.data import DataSpec
    from eval.core.extraction import TransformSpec
    from common.data import build_dataset

    data = build_dataset("synthetic_cls", None, "train", num_images=4, image_size=32)
    spec = DataSpec("cifar100", None, "train")
    own = TransformSpec().resolve(data, spec, lambda: {"norm": "imagenet"})
    assert own["norm"] == "imagenet"  # not the data set's CIFAR-100 statistics
    assert TransformSpec(norm="cifar10").resolve(data, spec, lambda: {"norm": "imagenet"})["norm"] == "cifar10"
    assert TransformSpec().resolve(data, spec, lambda: {})["norm"] == "cifar100"  # no record: the data set's


def test_a_binary_encoder_is_rebuilt_in_the_stage_it_trained_in(tmp_path):
    net = set_binary_stage(build_backbone("reactnet_a", width=0.125, small_images=True), 1)
    runs.write_encoder(tmp_path / "b.pt", {"backbone": "reactnet_a", "backbone_kwargs": {"width": 0.125, "small_images": True},
                                           "binary_stage": 1}, net.state_dict())
    model, meta = load_backbone(tmp_path / "b.pt")
    assert get_binary_stage(model) == 1 and meta["binary_stage"] == 1


def test_detection_normalizes_inputs_as_the_encoder_was_trained(tmp_path):
    from eval.detection_config import make_config
    from eval.detection_model import build_detector

    cfg = make_config(SMOKE_DETECTION)
    net = build_backbone("cifar_resnet20", **R20)
    assert tuple(build_detector(net, 3, cfg, "cifar10").transform.image_mean) == pytest.approx(CIFAR10_MEAN)
    assert tuple(build_detector(net, 3, cfg).transform.image_mean) == pytest.approx(IMAGENET_MEAN)
    override = make_config({**SMOKE_DETECTION, "norm": "cifar100"})
    assert tuple(build_detector(net, 3, override, "cifar10").transform.image_mean) == pytest.approx(CIFAR100_MEAN)
