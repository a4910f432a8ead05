"""BURN: lambda(t), the KL and L_FS terms against direct computations, gradients after one step
(the test the public release fails), multi-stage initialisation, the EMA toy, and the CLI."""
import copy
import json
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from burn.ema_toy import main as ema_main, simulate
from burn.loss import (LambdaSchedule, feature_similarity, kl_term, lambda_constant, lambda_cosine, lambda_step,
                       match_widths, pool_to_width)
from burn.method import BURN, PUBLIC_CODE
from burn.s2bnn import S2BNN
from common.backbones import build_backbone
from common.binary import binary_convs, get_binary_stage
from common.checkpoint import load_checkpoint
from common.engine import train
from common.errors import ConfigError
from common.heads import MLPHead
from common.optim import build_optimizer, param_groups
from common.views import build_views
from tests.engine_fixtures import tiny_config, tiny_dataset


def make_burn(seed=0, teacher_width=0.5, **kw):
    """Student: 32 px ReActNet-A at width 1/8 (128-d); teacher: CIFAR-stem ResNet-18 (256-d at 0.5)."""
    torch.manual_seed(seed)
    student = build_backbone("reactnet_a", width=0.125, small_images=True)
    teacher = build_backbone("resnet18", width=teacher_width, cifar_stem=True)
    views = build_views("burn", 16, norm="cifar10")
    kw.setdefault("classifier_dim", 16)
    kw.setdefault("hidden_dim", 16)
    return BURN(student, teacher, views, **kw)


def batch(n=8):
    data = tiny_dataset(32)
    return torch.stack([data[i][0] for i in range(n)]), torch.tensor([data[i][1] for i in range(n)])


# --- lambda(t) -------------------------------------------------------------------------------

def test_lambda_cosine_is_eq3():
    T = 1000
    assert lambda_cosine(0, T) == pytest.approx(0.9)
    assert lambda_cosine(T / 2, T) == pytest.approx(0.8)
    assert lambda_cosine(T, T) == pytest.approx(0.7)
    t = 137
    assert lambda_cosine(t, T) == pytest.approx(0.7 - (0.7 - 0.9) * (math.cos(math.pi * t / T) + 1) / 2)
    values = [lambda_cosine(t, T) for t in range(T + 1)]
    assert all(a > b for a, b in zip(values, values[1:]))  # strictly decreasing 0.9 -> 0.7


def test_lambda_constant_and_step():
    assert [lambda_constant(t, 10) for t in (0, 5, 10)] == [0.7, 0.7, 0.7]
    # H(-t + T/2): 1 up to and including T/2, 0 after
    assert [lambda_step(t, 10) for t in (0, 4, 5, 6, 10)] == [1.0, 1.0, 1.0, 0.0, 0.0]
    s = LambdaSchedule("step", step_high=0.9, step_low=0.7)
    assert (s(0, 10), s(6, 10)) == (0.9, 0.7)
    with pytest.raises(ConfigError):
        LambdaSchedule("linear")
    with pytest.raises(ConfigError):
        lambda_cosine(11, 10)


def test_method_lambda_follows_its_step_counter():
    m = make_burn()
    assert m.current_lambda() == pytest.approx(0.9)
    for step in range(5):
        m.after_optimizer_step(step, 10)
    assert int(m.iteration) == 5 and int(m.total_steps) == 10
    assert m.current_lambda() == pytest.approx(0.8)


# --- KL and L_FS -----------------------------------------------------------------------------

def test_kl_direction_and_temperature_against_direct_computation():
    g = torch.Generator().manual_seed(0)
    t, s = torch.randn(4, 7, generator=g), torch.randn(4, 7, generator=g)
    for T in (1.0, 0.2):
        p1 = torch.softmax(t.double() / T, 1).numpy()  # teacher (FP target)
        p2 = torch.softmax(s.double() / T, 1).numpy()  # student (binary)
        kl_21 = (p2 * (np.log(p2) - np.log(p1))).sum(1).mean()  # Alg. 1 line 22: D_KL(p2 || p1)
        kl_12 = (p1 * (np.log(p1) - np.log(p2))).sum(1).mean()  # public code
        assert abs(kl_21 - kl_12) > 1e-3  # the two directions really differ here
        assert kl_term(t, s, temperature=T).item() == pytest.approx(kl_21, rel=1e-5)
        assert kl_term(t, s, "teacher_student", T).item() == pytest.approx(kl_12, rel=1e-5)
    with pytest.raises(ConfigError):
        kl_term(t, s, "both")


def test_feature_similarity_choices_against_direct_computation():
    g = torch.Generator().manual_seed(1)
    a, b = torch.randn(5, 6, generator=g), torch.randn(5, 6, generator=g)
    A, B = a.double().numpy(), b.double().numpy()
    cos = (A * B).sum(1) / (np.linalg.norm(A, axis=1) * np.linalg.norm(B, axis=1))
    expected = {"cosine": (1 - cos).mean(), "nmse": (2 - 2 * cos).mean(),
                "l1": np.abs(A - B).sum(1).mean(), "l2": np.linalg.norm(A - B, axis=1).mean()}
    for kind, value in expected.items():
        assert feature_similarity(a, b, kind).item() == pytest.approx(value, rel=1e-5), kind


def test_dimension_match_pools_the_wider_vector_in_consecutive_groups():
    x = torch.arange(8.0).reshape(1, 8)
    assert pool_to_width(x, 4).tolist() == [[0.5, 2.5, 4.5, 6.5]]
    assert pool_to_width(x, 8) is x
    wide, narrow = torch.randn(3, 2048), torch.randn(3, 1024)  # ResNet-50 vs ReActNet-A
    a, b = match_widths(wide, narrow)
    assert b is narrow and torch.allclose(a, (wide[:, 0::2] + wide[:, 1::2]) / 2)
    with pytest.raises(ConfigError):
        match_widths(torch.randn(2, 6), torch.randn(2, 4))


def test_eq4_on_the_networks_matches_a_direct_computation():
    m = make_burn().eval()  # eval: the same BN statistics in both computations
    images, _ = batch()
    x = m.views[0](images, torch.Generator().manual_seed(0))
    loss, logs, _ = m.pair_loss(x, x, lam=0.8)
    with torch.no_grad():
        v1, v2 = m.teacher.trunk(x), m.backbone(x)  # 256-d and 128-d
        p1 = torch.softmax(m.teacher_classifier(v1).double(), 1)
        p2 = torch.softmax(m.student_classifier(v2).double(), 1)
        kl = (p2 * (p2.log() - p1.log())).sum(1).mean()
        v1p = v1.reshape(len(x), 128, 2).mean(2)
        fs = (1 - F.cosine_similarity(v1p.double(), v2.double(), dim=1)).mean()
    assert logs["kl"].item() == pytest.approx(kl.item(), rel=1e-4)
    assert logs["fs"].item() == pytest.approx(fs.item(), rel=1e-4)
    assert loss.item() == pytest.approx(0.2 * kl.item() + 0.8 * fs.item(), rel=1e-4)


# --- gradients after one optimizer step ------------------------------------------------------

CONFIGS = {
    "paper_stage1": dict(stage=1),
    "paper_stage2": dict(stage=2),
    "kl_only": dict(stage=1, lambda_schedule="constant", lambda_constant=0.0),
    "projection_l2": dict(stage=2, dim_match="projection", fs_loss="l2"),
    "public_code": dict(stage=1, **{**PUBLIC_CODE, "classifier_dim": 16, "hidden_dim": 16}),
}


@pytest.mark.parametrize("name", list(CONFIGS))
def test_one_step_trains_student_and_both_classifiers_but_never_the_fp_trunk(name):
    m = make_burn(**CONFIGS[name])
    m.train()
    trunk_before = copy.deepcopy(m.teacher.trunk.state_dict())
    optimizer = build_optimizer("adam", param_groups(m, 0.0), lr=1e-3)
    in_optimizer = {id(p) for group in optimizer.param_groups for p in group["params"]}
    images, labels = batch()
    out = m.training_step(images, labels, torch.Generator().manual_seed(0))
    out.loss.backward()

    trained = {"k": m.backbone, "l": m.student_classifier, "g": m.teacher_classifier}
    if m.fs_projection is not None:
        trained["projection"] = m.fs_projection
    for group, module in trained.items():
        for pname, p in module.named_parameters():
            assert p.requires_grad and id(p) in in_optimizer, f"{group}.{pname} is not trained"
            assert p.grad is not None and p.grad.abs().sum() > 0, f"{group}.{pname} has no gradient"
    for pname, p in m.teacher.trunk.named_parameters():
        assert not p.requires_grad and p.grad is None and id(p) not in in_optimizer, pname
    student_before = copy.deepcopy(m.backbone.state_dict())
    optimizer.step()
    for key, value in m.teacher.trunk.state_dict().items():  # weights AND BN buffers, bit for bit
        assert torch.equal(value, trunk_before[key]), key
    assert any(not torch.equal(v, student_before[k]) for k, v in m.backbone.state_dict().items())


def test_engine_run_keeps_the_trunk_identical_and_logs_the_three_gradient_curves(tmp_path):
    m = make_burn(stage=1)
    trunk_before = copy.deepcopy(m.teacher.trunk.state_dict())
    g_before = copy.deepcopy(m.teacher_classifier.state_dict())
    cfg = tiny_config(steps=3, optimizer="adam", lr=1e-3, weight_decay=0.0, warmup_steps=0, log_every=1)
    metrics = train(m, tiny_dataset(64), cfg, tmp_path)
    assert metrics["status"] == "ok"
    for key, value in m.teacher.trunk.state_dict().items():
        assert torch.equal(value, trunk_before[key]), key
    assert not torch.equal(m.teacher_classifier.weight, g_before["weight"])  # g is a moving target
    curves = tmp_path / "dvclive" / "plots" / "metrics" / "train" / "grad_norm"
    for group in ("binary_feature_extractor", "binary_classifier", "fp_classifier"):
        rows = (curves / f"{group}.tsv").read_text().strip().splitlines()[1:]
        assert len(rows) == 3 and all(float(r.split()[1]) > 0 for r in rows), group
    lam = (tmp_path / "dvclive" / "plots" / "metrics" / "train" / "lambda.tsv").read_text().split()
    assert float(lam[3]) == pytest.approx(0.9)  # t = 0 of 3 steps
    assert float(lam[5]) == pytest.approx(0.7 - (0.7 - 0.9) * (math.cos(math.pi / 3) + 1) / 2)


def test_teacher_bn_train_option_uses_batch_statistics():
    m = make_burn(teacher_bn="train").train()
    assert m.teacher.trunk.training
    m2 = make_burn().train()
    assert not m2.teacher.trunk.training and m2.training


# --- multi-stage -----------------------------------------------------------------------------

def test_stage2_starts_from_stage1_student_and_classifier(tmp_path):
    s1 = make_burn(stage=1, teacher_width=0.25)
    assert get_binary_stage(s1.backbone) == 1
    cfg = tiny_config(steps=2, optimizer="adam", lr=1e-3, weight_decay=0.0, warmup_steps=0)
    train(s1, tiny_dataset(64), cfg, tmp_path)
    saved = load_checkpoint(tmp_path / "checkpoint.pt")["model"]

    def check(stage2, g_from_stage1):
        assert get_binary_stage(stage2.backbone) == 2
        assert all(c.binary_weights for c in binary_convs(stage2.backbone))
        for name in ("backbone", "student_classifier", "teacher_classifier"):
            for key, value in getattr(stage2, name).state_dict().items():
                same = torch.equal(value, saved[f"method.{name}.{key}"])
                assert same == (name != "teacher_classifier" or g_from_stage1), (name, key)

    modified = make_burn(seed=1, stage=2, teacher_width=0.25)
    info = modified.init_from_stage1(tmp_path)
    assert info["loaded"] == ["backbone", "student_classifier", "teacher_classifier"]
    check(modified, g_from_stage1=True)
    unmodified = make_burn(seed=1, stage=2, teacher_width=0.25, scheme="unmodified")
    fresh_g = copy.deepcopy(unmodified.teacher_classifier.state_dict())
    unmodified.init_from_stage1(tmp_path)
    check(unmodified, g_from_stage1=False)
    assert all(torch.equal(v, fresh_g[k]) for k, v in unmodified.teacher_classifier.state_dict().items())
    with pytest.raises(ConfigError, match="checkpoint"):
        make_burn(stage=2, teacher_width=0.25, classifier_dim=8).init_from_stage1(tmp_path)


# --- S2-BNN ----------------------------------------------------------------------------------

def test_s2bnn_soft_cross_entropy_on_normalised_embeddings_and_fixed_teacher():
    torch.manual_seed(0)
    student = build_backbone("reactnet_a", width=0.125, small_images=True)
    trunk = build_backbone("resnet18", width=0.25, cifar_stem=True)
    head = MLPHead(128, 32, 16, hidden_bn=False)
    m = S2BNN(student, trunk, head, build_views("burn", 16, norm="cifar10")).eval()
    images, labels = batch()
    out = m.training_step(images, labels, torch.Generator().manual_seed(0))
    x = m.views[0](images, torch.Generator().manual_seed(0))
    with torch.no_grad():
        t = F.normalize(head(trunk(x)).double(), dim=1)
        s = F.normalize(m.head(m.backbone(x)).double(), dim=1)
        ce = -(torch.softmax(t / 0.2, 1) * torch.log_softmax(s / 0.2, 1)).sum(1).mean()
    assert out.loss.item() == pytest.approx(ce.item(), rel=1e-4)
    out.loss.backward()
    assert all(p.grad is None for p in list(trunk.parameters()) + list(head.parameters()))
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in m.head.parameters())
    assert get_binary_stage(student) == 2


# --- EMA toy (Eq. 5, Fig. 4) -----------------------------------------------------------------

def test_ema_toy_shapes_and_the_papers_qualitative_claims():
    c = simulate()  # 100-d, eta 4.8, tau 0.99, 100 iterations, 10 runs
    assert c["fp"].shape == c["binary"].shape == (10, 100)
    assert c["binary_mean"].shape == (100,)
    assert np.allclose(c["binary_std"], c["binary"].std(0))
    b, f = c["binary_mean"], c["fp_mean"]
    assert (b > f).all()  # "the L2 distance is larger ... in the binary case"
    assert c["binary_std"].mean() > 1.3 * c["fp_std"].mean()  # "... and has higher variance"
    # "in the binary case, the L2 distance does not decrease over time": flat over the second half
    assert b[75:].mean() > 0.95 * b[50:75].mean()
    # one update by hand: distance of unit vectors after the first step of run 0
    rng = np.random.default_rng([0, 0])
    x = rng.standard_normal(100)
    bb = x + 4.8 * rng.standard_normal(100)
    tt = 0.99 * x + 0.01 * bb
    assert c["fp"][0, 0] == pytest.approx(np.linalg.norm(bb / np.linalg.norm(bb) - tt / np.linalg.norm(tt)))
    sb, st = np.where(bb >= 0, 1, -1), np.where(tt >= 0, 1, -1)
    assert c["binary"][0, 0] == pytest.approx(np.linalg.norm(sb - st) / 10)


def test_ema_toy_cli_writes_json_and_png(tmp_path):
    assert ema_main(["--out", str(tmp_path), "--runs", "3", "--iterations", "20"]) == 0
    data = json.loads((tmp_path / "ema_toy.json").read_text())
    assert len(data["binary_mean"]) == 20 and data["settings"]["runs"] == 3
    assert (tmp_path / "ema_toy.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert ema_main(["--out", str(tmp_path), "--runs", "0"]) == 2
