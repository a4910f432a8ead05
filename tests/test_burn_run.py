"""BURN end to end at toy scale: the CLI chain teacher -> stage 1 -> stage 2 (+ S2-BNN and a
baseline), and a short run whose binary student beats a random-init one in kNN accuracy."""
import copy
import json

import torch

from burn.method import BURN
from burn.pretrain import main
from common.backbones import build_backbone
from common.binary import get_binary_stage, set_binary_stage
from common.checkpoint import load_checkpoint
from common.engine import load_encoder, train
from common.features import extract_features, knn_accuracy
from common.methods.supervised import Supervised
from common.views import build_views, eval_transform
from tests.engine_fixtures import tiny_config, tiny_dataset


SMALL = ["burn.dataset.options.num_images=32", "burn.dataset.options.image_size=16",
         "burn.train.steps=2", "burn.train.batch_size=8"]
for _m in ("burn", "s2bnn", "mocov2", "byol"):
    SMALL.append(f"burn.views.{_m}.out_size=16")


def cli(*args):
    return main([*map(str, args), *SMALL])


def test_cli_chain_teacher_stage1_stage2_s2bnn_and_a_baseline(tmp_path, capsys):
    teacher, s1, s2 = tmp_path / "teacher", tmp_path / "s1", tmp_path / "s2"
    assert cli("--method", "mocov2", "--backbone", "resnet18", "--as-teacher", "--out", teacher,
               "burn.teacher.train.steps=3") == 0
    assert json.loads((teacher / "metrics.json").read_text())["step"] == 3  # burn.teacher.train wins
    assert cli("--method", "burn", "--backbone", "reactnet_a", "--stage", 1, "--teacher", teacher, "--out", s1) == 0
    assert cli("--method", "burn", "--backbone", "reactnet_a", "--stage", 2, "--teacher", teacher,
               "--init", s1, "--out", s2) == 0
    metrics = json.loads((s2 / "metrics.json").read_text())
    assert metrics["status"] == "ok" and metrics["method"]["stage"] == 2
    assert metrics["provenance"]["init"]["scheme"] == "modified"
    # encoder.pt says how to rebuild the binary feature extractor
    meta = load_checkpoint(s2 / "encoder.pt")
    net = set_binary_stage(build_backbone(meta["backbone"], **meta["backbone_kwargs"]), meta["binary_stage"])
    load_encoder(s2 / "encoder.pt", net)
    assert get_binary_stage(net) == 2
    assert cli("--method", "s2bnn", "--backbone", "reactnet_a", "--teacher", teacher, "--out", tmp_path / "s2bnn") == 0
    assert cli("--method", "byol", "--backbone", "reactnet_a", "--out", tmp_path / "byol") == 0
    assert json.loads((tmp_path / "byol" / "metrics.json").read_text())["status"] == "ok"
    assert json.loads((tmp_path / "byol" / "metrics.json").read_text())["step"] == 2
    # bad input: one line, exit 2, nothing written
    capsys.readouterr()
    assert cli("--method", "burn", "--backbone", "reactnet_a", "--stage", 2, "--teacher", teacher,
               "--out", tmp_path / "bad") == 2
    assert cli("--method", "burn", "--backbone", "reactnet_a", "--stage", 1, "--teacher", teacher,
               "--variant", "nope", "--out", tmp_path / "bad") == 2
    assert cli("--method", "byol", "--backbone", "reactnet_a", "--teacher", teacher, "--out", tmp_path / "bad") == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 3 and all(line.startswith("error: ") for line in err)
    assert not (tmp_path / "bad").exists()


def knn_of(backbone):
    tr, te = tiny_dataset(512, "train"), tiny_dataset(256, "test")
    view = eval_transform(16, norm="cifar10")
    ftr, ltr = extract_features(backbone, tr, view, 128)
    fte, lte = extract_features(backbone, te, view, 128)
    return knn_accuracy(ftr, ltr, fte, lte, 10, k=20, temperature=0.1)


def test_short_burn_run_beats_a_random_init_binary_network_in_knn(tmp_path):
    # The FP teacher: a quarter-width CIFAR ResNet-18 given useful features quickly (40 supervised
    # steps; the teacher's provenance does not matter to BURN, which never sees labels).
    torch.manual_seed(0)
    trunk = build_backbone("resnet18", width=0.25, cifar_stem=True)
    fast = dict(batch_size=32, optimizer="adam", weight_decay=0.0, warmup_steps=0, ckpt_every=1000,
                log_every=10, num_classes=None)
    train(Supervised(trunk, build_views("crop_flip", 16, norm="cifar10"), num_classes=10), tiny_dataset(512),
          tiny_config(steps=40, lr=3e-3, **fast), tmp_path / "teacher")
    torch.manual_seed(0)
    student = build_backbone("reactnet_a", width=0.125, small_images=True)
    random_init = copy.deepcopy(student)
    burn = BURN(student, trunk, build_views("burn", 16, norm="cifar10"), stage=1, classifier_dim=16)
    train(burn, tiny_dataset(512), tiny_config(steps=80, lr=3e-3, **fast), tmp_path / "burn")
    trained, random_acc = knn_of(burn.backbone), knn_of(random_init)
    print(f"kNN: BURN student {trained:.3f}, random init {random_acc:.3f}")
    assert trained > random_acc + 0.03
