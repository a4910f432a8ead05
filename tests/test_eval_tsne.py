"""eval.tsne: class choice (at most 20), point selection, seeded embedding, PNG + coordinates on
the real CIFAR-10 subset through the CLI."""
import json

import numpy as np
import pytest
import torch

import eval.tsne as et
from common.backbones import build_backbone
from common.checkpoint import save_checkpoint
from common.errors import ConfigError

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


pytestmark = pytest.mark.filterwarnings("ignore::common.data.PartialDatasetWarning")


def test_at_most_20_classes_first_or_seeded():
    labels = np.repeat(np.arange(30), 3)
    assert et.choose_classes(labels) == list(range(20))
    a = et.choose_classes(labels, choice="random", seed=1)
    assert a == et.choose_classes(labels, choice="random", seed=1)
    assert len(a) == 20 and len(set(a)) == 20 and set(a) <= set(range(30)) and a != list(range(20))
    assert et.choose_classes(np.array([3, 1, 3]), choice="random") == [1, 3]
    with pytest.raises(ConfigError, match="--max-classes"):
        et.choose_classes(labels, max_classes=21)


def test_select_points_takes_the_first_per_class_in_order():
    labels = np.array([2, 0, 2, 1, 2, 0, 2])
    assert et.select_points(labels, [0, 2], 2).tolist() == [0, 1, 2, 5]


def test_embedding_is_seeded_and_checks_perplexity():
    x = np.random.default_rng(0).normal(size=(40, 8))
    a, b = et.embed(x, perplexity=10, seed=0), et.embed(x, perplexity=10, seed=0)
    assert a.shape == (40, 2) and np.array_equal(a, b)
    with pytest.raises(ConfigError, match="--perplexity"):
        et.embed(x, perplexity=40)


def test_cli_writes_png_and_coordinates_on_cifar10(tmp_path, shared_data):
    names = []
    for seed in (0, 1):
        path = tmp_path / f"model{seed}" / "encoder.pt"
        torch.manual_seed(seed)
        save_checkpoint({"backbone": "cifar_resnet20", "backbone_kwargs": {"width": 0.25},
                         "state_dict": build_backbone("cifar_resnet20", width=0.25).state_dict()}, path)
        names += ["--encoder", str(path)]
    out = tmp_path / "tsne"
    rc = et.main([*names, "--dataset", "cifar10", "--root", str(shared_data / "cifar10"), "--limit", "200",
                  "--per-class", "8", "--out", str(out), "--device", "cpu"])
    assert rc == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert [m["name"] for m in metrics["models"]] == ["model0", "model1"]
    for name in ("model0", "model1"):
        assert (out / f"{name}.png").read_bytes()[:8] == PNG_MAGIC
        saved = np.load(out / f"{name}_tsne.npz")
        assert saved["coords"].shape == (80, 2) and np.isfinite(saved["coords"]).all()  # 10 classes x 8
        assert sorted(set(saved["labels"].tolist())) == list(range(10))
        assert len(saved["classes"]) == 10 and saved["classes"][0] == "airplane"
    assert metrics["perplexity"] == 30.0 and metrics["provenance"]["stage"] == "eval.tsne"
