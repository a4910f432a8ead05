"""eval.knn: weighted votes by hand, top-5 ordering, the CLI, and cache sharing with linear."""
import json
import math

import pytest
import torch

import eval.core.extraction as ex
import eval.knn as ek
from eval.core.data import DataSpec
from eval.core.extraction import FeatureExtractor
from eval.linear import run_linear
from eval.presets import LINEAR_PRESETS
from common.predictions import correct
from tests.engine_fixtures import write_encoder

OPTS = "{num_images: 48, image_size: 16}"


@pytest.fixture(scope="module")
def encoder(tmp_path_factory):
    path = tmp_path_factory.mktemp("enc") / "encoder.pt"
    write_encoder(path)
    return path


def test_weighted_votes_by_hand():
    # train points on the unit circle at angles 0, 10, 100, 180 degrees with classes 0, 0, 1, 2;
    # test point at 90 degrees, k = 2: neighbours 100 deg (class 1, cos 10deg) and 10 deg
    # (class 0, cos 80deg): class 1 wins (larger similarity), top-2 holds classes 1 and 0.
    ang = torch.tensor([0.0, 10.0, 100.0, 180.0]) * math.pi / 180
    train = torch.stack([ang.cos(), ang.sin()], 1) * torch.tensor([[1.0], [2.0], [3.0], [0.5]])  # norms do not matter
    labels = torch.tensor([0, 0, 1, 2])
    test = torch.tensor([[0.0, 1.0], [1.0, 0.05]])
    acc = ek.knn_topk(train, labels, test, torch.tensor([0, 0]), num_classes=3, k=2, temperature=0.1)
    # test 0: top1 = 1 (wrong), class 0 second -> in top-2/top-5; test 1 (near 0 deg): top1 = 0
    assert acc == {"top1": 0.5, "top5": 1.0}
    # with k = 1 the second test point's single neighbour is the 0-degree point
    acc1 = ek.knn_topk(train, labels, test, torch.tensor([1, 0]), num_classes=3, k=1, temperature=0.1)
    assert acc1["top1"] == 1.0


def test_cli_writes_metrics_and_reuses_linear_features(encoder, tmp_path, monkeypatch):
    cache = tmp_path / "cache"
    spec = DataSpec("synthetic", None, "train", {"num_images": 48, "image_size": 16})
    run_linear(FeatureExtractor(encoder, cache), spec, spec.with_split("test"),
               LINEAR_PRESETS["burn"].scaled(epochs=1, lr=0.1), "cached")
    calls = []
    monkeypatch.setattr(ex, "extract_features", lambda *a, **k: calls.append(1))
    out = tmp_path / "knn"
    rc = ek.main(["--encoder", str(encoder), "--dataset", "synthetic", "--options", OPTS, "--out", str(out),
                  "--k", "5", "--temperature", "0.5", "--cache-dir", str(cache), "--device", "cpu"])
    assert rc == 0 and calls == []  # both splits came from the linear run's cache
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["suite"] == "knn" and metrics["k"] == 5 and metrics["temperature"] == 0.5
    # every test image's prediction is kept, and agrees with the accuracy
    assert correct(metrics).mean() == pytest.approx(metrics["top1"]) and metrics["predictions"]["n"] == metrics["num_test"]
    assert metrics["num_train"] == 48 and 0 <= metrics["top1"] <= metrics["top5"] <= 1
    assert metrics["provenance"]["stage"] == "eval.knn"


@pytest.mark.parametrize("extra", [["--k", "0"], ["--temperature", "0"], ["--temperature", "inf"],
                                   ["--extract-batch", "0"], ["--limit", "-1"]])
def test_cli_bad_parameters_exit_2(encoder, tmp_path, capsys, extra):
    rc = ek.main(["--encoder", str(encoder), "--dataset", "synthetic", "--options", OPTS,
                  "--out", str(tmp_path / "o"), *extra])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1 and f"argument {extra[0]}: expected" in err[0]
    assert not (tmp_path / "o").exists()
