"""eval.linear: top-k by hand, the schedule, separable data, trained vs random backbones (linear
and kNN), both modes, and the CIFAR-10 CLI end to end on the real subset."""
import json
import math

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.utils.data import DataLoader

import eval.linear as el
from common.backbones import build_backbone
from common.checkpoint import save_checkpoint
from common.data import build_dataset
from common.views import eval_transform
from eval.core.data import DataSpec
from eval.core.extraction import FeatureExtractor
from eval.core.records import topk_accuracy
from eval.core.training import schedule_for
from eval.knn import run_knn
from eval.presets import LINEAR_PRESETS, TrainPreset
from common.predictions import decode
from tests.seeds import seed

SYN = {"num_images": 256, "image_size": 16, "seed": seed(0)}


pytestmark = pytest.mark.filterwarnings("ignore::common.data.PartialDatasetWarning")


def save_encoder(backbone, path):
    save_checkpoint({"backbone": "cifar_resnet20", "backbone_kwargs": {"width": 0.5},
                     "state_dict": backbone.state_dict()}, path)
    return path


@pytest.fixture(scope="module")
def encoders(tmp_path_factory):
    """A random backbone and the same backbone briefly trained (supervised, 3 epochs of 1024
    synthetic images, about 5 s): a cheap, reliable stand-in for a "trained" checkpoint."""
    folder = tmp_path_factory.mktemp("enc")
    torch.manual_seed(seed(0))
    backbone = build_backbone("cifar_resnet20", width=0.5)
    random_path = save_encoder(backbone, folder / "random.pt")
    head = nn.Linear(backbone.feature_dim, 10)
    data = build_dataset("synthetic", None, "train", **{**SYN, "num_images": 1024})
    view = eval_transform(16, norm="cifar10")
    optimizer = torch.optim.Adam(list(backbone.parameters()) + list(head.parameters()), lr=3e-3)
    generator = torch.Generator().manual_seed(seed(0))
    backbone.train()
    for _ in range(3):
        for images, labels in DataLoader(data, batch_size=32, shuffle=True, generator=generator):
            loss = F.cross_entropy(head(backbone(view(images))), labels)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    return {"random": random_path, "trained": save_encoder(backbone, folder / "trained.pt")}


def test_topk_accuracy_by_hand():
    scores = torch.tensor([[0.1, 0.9, 0.0], [0.8, 0.1, 0.1], [0.2, 0.3, 0.5], [float("nan"), 0.0, 1.0]])
    targets = torch.tensor([1, 1, 0, 0])
    acc = topk_accuracy(scores, targets, ks=(1, 2, 5))
    assert acc["top1"] == 0.25  # only row 0
    assert acc["top2"] == 0.5   # rows 0 and 1 (row 2: 0 is third; row 3: NaN ranks last)
    assert acc["top5"] == 1.0   # capped at 3 classes: always right


def test_schedule_of_the_burn_preset_by_step():
    preset = LINEAR_PRESETS["burn"].scaled(epochs=10)
    assert preset.milestones == (6, 8) and preset.lr == 30.0
    schedule = schedule_for(preset, steps_per_epoch=3)
    assert [schedule(s) for s in (0, 17, 18, 23, 24, 29)] == pytest.approx([1, 1, 0.1, 0.1, 0.01, 0.01])
    cosine = schedule_for(LINEAR_PRESETS["cq"].scaled(epochs=2), steps_per_epoch=2)
    assert [cosine(s) for s in range(4)] == pytest.approx([1.0, (1 + math.cos(math.pi / 4)) / 2, 0.5,
                                                           (1 + math.cos(3 * math.pi / 4)) / 2])


def test_separable_features_are_classified_perfectly():
    g = torch.Generator().manual_seed(0)
    centres = torch.eye(4) * 5
    y = torch.arange(200) % 4
    x = centres[y] + 0.3 * torch.randn(200, 4, generator=g)
    preset = TrainPreset("t", epochs=20, lr=0.5, momentum=0.9, nesterov=False, weight_decay=0.0,
                         batch_size=32, schedule="cosine")
    head, info = el.train_linear_cached(x[:100], y[:100], 4, preset)
    assert info["status"] == "ok" and info["epochs_run"] == 20
    assert el.evaluate_linear(head, x[100:], y[100:]) == {"top1": 1.0, "top5": 1.0}
    # strictly linear: one nn.Linear, nothing else
    assert isinstance(head, nn.Linear) and sum(p.numel() for p in head.parameters()) == 4 * 4 + 4


def test_non_finite_loss_stops_with_status_diverged():
    x = torch.full((8, 2), 1e30)
    preset = TrainPreset("t", epochs=5, lr=1e30, momentum=0.9, nesterov=False, weight_decay=0.0,
                         batch_size=4, schedule="step")
    _, info = el.train_linear_cached(x, torch.tensor([0, 1] * 4), 2, preset)
    assert info["status"] == "diverged" and info["epochs_run"] == 1


@pytest.mark.learning
def test_trained_backbone_beats_random_in_linear_and_knn(encoders, tmp_path):
    train = DataSpec("synthetic", None, "train", SYN)
    test = DataSpec("synthetic", None, "test", SYN)
    preset = LINEAR_PRESETS["burn"].scaled(epochs=30, lr=1.0, batch_size=64)
    results = {}
    for kind, path in encoders.items():
        fx = FeatureExtractor(path, tmp_path / "cache")
        lin = el.run_linear(fx, train, test, preset, "cached")
        knn = run_knn(fx, train, test, k=20, temperature=0.1)
        results[kind] = (lin["top1"], knn["top1"])
    print("linear / kNN top-1 (trained, random):", results)  # chance = 0.10
    (lin_t, knn_t), (lin_r, knn_r) = results["trained"], results["random"]
    assert lin_t >= 0.4 and knn_t >= 0.4                   # chance is 0.10
    assert lin_t >= lin_r + 0.15 and knn_t >= knn_r + 0.15


def test_augment_mode_trains_through_the_frozen_backbone(encoders, tmp_path):
    fx = FeatureExtractor(encoders["trained"], tmp_path / "cache")
    before = {k: v.clone() for k, v in fx.backbone.state_dict().items()}
    preset = LINEAR_PRESETS["burn"].scaled(epochs=2, lr=1.0, batch_size=64)
    spec = DataSpec("synthetic", None, "train", {**SYN, "num_images": 64})
    aug = el.run_linear(fx, spec, spec.with_split("test"), preset, "augment")
    cached = el.run_linear(fx, spec, spec.with_split("test"), preset, "cached")
    assert aug["mode"] == "augment" and cached["mode"] == "cached"
    assert aug["status"] == "ok" and 0.0 <= aug["top1"] <= 1.0
    # the backbone is untouched (frozen, eval mode: BN running stats unchanged)
    after = fx.backbone.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert aug["final_loss"] != cached["final_loss"]  # different (augmented) training inputs


def test_cli_cifar10_end_to_end(encoders, tmp_path, shared_data, capsys):
    out = tmp_path / "lin"
    rc = el.main(["--encoder", str(encoders["trained"]), "--dataset", "cifar10",
                  "--root", str(shared_data / "cifar10"), "--limit", "400", "--epochs", "3",
                  "--lr", "1.0", "--out", str(out), "--cache-dir", str(tmp_path / "cache"),
                  "--device", "cpu", "--preset", "burn"])
    assert rc == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["suite"] == "linear" and metrics["mode"] == "cached" and metrics["preset"] == "burn"
    assert metrics["num_train"] == 400 and metrics["num_test"] == 400 and metrics["num_classes"] == 10
    assert metrics["settings"]["epochs"] == 3 and metrics["settings"]["lr"] == 1.0
    assert metrics["settings"]["milestones"] == [2] and metrics["settings"]["momentum"] == 0.9
    assert 0.0 <= metrics["top1"] <= metrics["top5"] <= 1.0
    assert metrics["provenance"]["stage"] == "eval.linear" and "git_commit" in metrics["provenance"]
    assert metrics["data"]["train"]["name"] == "cifar10"
    top1, targets = decode(metrics)  # the test images' labels in data set order, and the predictions
    assert len(top1) == 400 and (top1 == targets).mean() == pytest.approx(metrics["top1"])
    assert not list(out.glob("*.tmp"))


@pytest.mark.parametrize("extra,needle", [(["--mode", "both"], "--mode"), (["--preset", "simclr"], "--preset"),
                                          (["--epochs", "0"], "epochs")])
def test_cli_bad_input_one_line_exit_2(encoders, tmp_path, capsys, extra, needle):
    rc = el.main(["--encoder", str(encoders["random"]), "--dataset", "synthetic", "--options",
                  "{num_images: 16, image_size: 16}", "--out", str(tmp_path / "o"), *extra])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1 and needle in err[0]
    assert not (tmp_path / "o" / "metrics.json").exists()
