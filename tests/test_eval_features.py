"""eval.core (encoders, extraction) and eval.features: strict loading, the layers, the cache (reused, invalidated) and the SVM file."""
import numpy as np
import pytest
import torch
import torch.nn.functional as F

import eval.core.extraction as ex
import eval.features as ef
from common.checkpoint import load_checkpoint, save_checkpoint
from tests.engine_fixtures import write_encoder
from common.data import build_dataset
from common.errors import ConfigError
from common.views import eval_transform
from eval.core.data import DataSpec
from eval.core.encoders import LayerFeatures, file_sha256, load_backbone
from eval.core.extraction import FeatureExtractor
from eval.features import write_svm_features

SYN = {"num_images": 48, "image_size": 16}


class CountingExtract:
    """Stands in for eval.core.extraction.extract_features and counts the calls."""

    def __init__(self):
        self.calls = 0
        self.real = ex.extract_features

    def __call__(self, *args, **kwargs):
        self.calls += 1
        return self.real(*args, **kwargs)


def test_features_equal_a_direct_forward_of_the_checkpoint(tmp_path):
    backbone = write_encoder(tmp_path / "encoder.pt")
    spec = DataSpec("synthetic", None, "test", SYN)
    got = FeatureExtractor(tmp_path / "encoder.pt").features(spec)
    data = build_dataset("synthetic", None, "test", **SYN)
    images = torch.stack([data[i][0] for i in range(len(data))])
    with torch.no_grad():
        expected = backbone(eval_transform(16, norm="cifar10")(images))
    assert got.features.shape == (48, 32)
    torch.testing.assert_close(got.features, expected, rtol=1e-5, atol=1e-6)
    assert torch.equal(got.targets, torch.tensor(data.targets))
    assert not got.from_cache


def test_cache_is_reused_and_a_changed_checkpoint_invalidates_it(tmp_path, monkeypatch):
    counter = CountingExtract()
    monkeypatch.setattr(ex, "extract_features", counter)
    enc, cache = tmp_path / "encoder.pt", tmp_path / "cache"
    write_encoder(enc, seed=0)
    spec = DataSpec("synthetic", None, "train", SYN)

    first = FeatureExtractor(enc, cache).features(spec)
    assert counter.calls == 1 and not first.from_cache
    assert (cache / f"{first.key}.pt").is_file()

    fx = FeatureExtractor(enc, cache)
    second = fx.features(spec)
    assert counter.calls == 1, "the second request must not extract"
    assert second.from_cache and second.key == first.key
    assert fx._backbone is None, "a cache hit must not even build the backbone"
    assert torch.equal(second.features, first.features) and torch.equal(second.targets, first.targets)

    # other layer, other split, other options: other keys, extracted once each
    keys = {first.key, fx.features(spec, "last_stage_pool2").key,
            fx.features(spec.with_split("test")).key,
            fx.features(DataSpec("synthetic", None, "train", {**SYN, "seed": 1})).key}
    assert len(keys) == 4 and counter.calls == 4

    # same path, different bytes: new sha, new key, extracted again, different features
    old_sha = file_sha256(enc)
    write_encoder(enc, seed=1)
    assert file_sha256(enc) != old_sha
    third = FeatureExtractor(enc, cache).features(spec)
    assert counter.calls == 5 and not third.from_cache and third.key != first.key
    assert not torch.allclose(third.features, first.features)


def test_sha256_is_of_the_file_bytes(tmp_path):
    path = tmp_path / "f.bin"
    path.write_bytes(b"abc")
    assert file_sha256(path) == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"


def test_last_stage_pool2_is_the_last_map_pooled_2x2_by_hand(tmp_path):
    backbone = write_encoder(tmp_path / "e.pt")
    x = torch.randn(3, 3, 16, 16)
    with torch.no_grad():
        m = backbone.relu(backbone.bn1(backbone.conv1(x)))
        m = backbone.layer3(backbone.layer2(backbone.layer1(m)))  # (3, 32, 4, 4)
        by_hand = m.reshape(3, 32, 2, 2, 2, 2).mean(dim=(3, 5)).flatten(1)
        got = LayerFeatures(backbone, "last_stage_pool2")(x)
        pooled = LayerFeatures(backbone, "pooled")(x)
    assert got.shape == (3, 32 * 4)
    torch.testing.assert_close(got, by_hand)
    torch.testing.assert_close(pooled, m.mean(dim=(2, 3)))  # pooled = the global average


@pytest.mark.parametrize("name,kwargs,channels", [
    ("reactnet_a", {"width": 0.0625, "small_images": True}, 64),  # 1024 * width; BURN: 1024 x 2 x 2
    ("resnet18", {"width": 0.125, "cifar_stem": True}, 64),       # 512 * width
    ("mobilenet_v2", {"small_images": True, "width_mult": 0.25}, None),
])
def test_last_stage_pool2_on_other_backbones(tmp_path, name, kwargs, channels):
    backbone = write_encoder(tmp_path / "e.pt", name, **kwargs)
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        fmap = (backbone.forward_features(x) if hasattr(backbone, "forward_features")
                else backbone.features(x) if name == "mobilenet_v2" else
                backbone.layer4(backbone.layer3(backbone.layer2(backbone.layer1(
                    backbone.maxpool(backbone.relu(backbone.bn1(backbone.conv1(x)))))))))
        got = LayerFeatures(backbone, "last_stage_pool2")(x)
    assert got.shape == (2, fmap.shape[1] * 4)
    if channels is not None:
        assert fmap.shape[1] == channels
    torch.testing.assert_close(got, F.adaptive_avg_pool2d(fmap, 2).flatten(1))


def test_strict_loading_and_bad_files(tmp_path):
    write_encoder(tmp_path / "e.pt")
    model, meta = load_backbone(tmp_path / "e.pt")
    assert meta["backbone"] == "cifar_resnet20" and "state_dict" not in meta and not model.training
    ckpt = load_checkpoint(tmp_path / "e.pt")
    ckpt["state_dict"].pop("conv1.weight")
    save_checkpoint(ckpt, tmp_path / "missing.pt")
    with pytest.raises(ConfigError, match="missing"):
        load_backbone(tmp_path / "missing.pt")
    save_checkpoint({"weights": {}}, tmp_path / "other.pt")
    with pytest.raises(ConfigError, match="not an encoder file"):
        load_backbone(tmp_path / "other.pt")
    with pytest.raises(ConfigError, match="--layer"):
        FeatureExtractor(tmp_path / "e.pt").features(DataSpec("synthetic", None, "test", SYN), "layer9")


def test_limit_keeps_the_first_images_and_enters_the_key(tmp_path):
    write_encoder(tmp_path / "e.pt")
    fx = FeatureExtractor(tmp_path / "e.pt")
    full = fx.features(DataSpec("synthetic", None, "test", SYN))
    part = fx.features(DataSpec("synthetic", None, "test", SYN, limit=10))
    assert part.features.shape[0] == 10 and part.key != full.key
    torch.testing.assert_close(part.features, full.features[:10])
    with pytest.raises(ConfigError, match="--limit"):
        DataSpec("synthetic", None, "test", SYN, limit=0).build()


def test_svm_feature_file_has_the_svm_suite_format(tmp_path):
    write_encoder(tmp_path / "e.pt")
    spec = DataSpec("synthetic_cls", None, "trainval", SYN)
    write_svm_features(tmp_path / "e.pt", spec, tmp_path / "svm.pt", cache_dir=tmp_path / "cache")
    obj = torch.load(tmp_path / "svm.pt", weights_only=True)
    for split in ("trainval", "test"):
        data = build_dataset("synthetic_cls", None, split, **SYN)
        feats, labels = obj[split]["features"], obj[split]["labels"]
        assert feats.dtype == torch.float32 and feats.shape == (48, 32 * 4)  # last_stage_pool2
        assert labels.dtype == torch.int8 and labels.shape == (48, 20)
        assert np.array_equal(labels.numpy(), np.asarray(data.voc_labels))
        assert set(labels.unique().tolist()) <= {-1, 0, 1}
    assert len(obj["classes"]) == 20


def test_features_cli_bad_input_is_one_line_and_exit_2(tmp_path, capsys):
    rc = ef.main(["--encoder", str(tmp_path / "absent.pt"), "--root", str(tmp_path), "--out", str(tmp_path / "f.pt")])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1 and "absent.pt" in err[0]
    assert not (tmp_path / "f.pt").exists()
