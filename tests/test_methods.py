"""The SSL base methods (BYOL, MoCo v2, SwAV, supervised; SimCLR in the engine runs): their
losses against direct computations, their momentum / queue / prototype bookkeeping, and a short
run of each through the real engine that must lower the loss and beat a random backbone in kNN
accuracy on held-out synthetic data."""
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from common.backbones import build_backbone
from common.engine import TrainConfig, train
from common.errors import ConfigError
from common.methods.byol import BYOL, byol_pair_loss, cosine_tau
from common.methods.mocov2 import MoCoV2, moco_infonce
from common.methods.registry import build_method, list_methods
from common.methods.supervised import Supervised
from common.methods.swav import SwAV, sinkhorn_knopp, swapped_prediction_loss
from common.views import build_views
from tests.learning import SIZE, knn_top1, mean_margin, synthetic



def tiny_backbone(seed: int = 0):
    torch.manual_seed(seed)
    return build_backbone("cifar_resnet20", width=0.25)


def fixed_views():
    return build_views("none", SIZE, norm="cifar10")  # deterministic: eval geometry only


def random_views():
    return build_views("simclr", SIZE, strength=0.5, blur=False, norm="cifar10")


def images(n: int = 8, seed: int = 0) -> torch.Tensor:
    return torch.randint(0, 256, (n, 3, SIZE, SIZE), generator=torch.Generator().manual_seed(seed),
                         dtype=torch.uint8)


def sgd(method, lr=0.1, weight_decay=0.0):
    return torch.optim.SGD([p for p in method.parameters() if p.requires_grad], lr=lr, momentum=0.9,
                           weight_decay=weight_decay)


def one_step(method, opt, x, labels=None, seed=0):
    out = method.training_step(x, labels if labels is not None else torch.full((x.shape[0],), -1),
                               torch.Generator().manual_seed(seed))
    opt.zero_grad()
    out.loss.backward()
    opt.step()
    return out


def snapshot(module):
    return [p.detach().clone() for p in module.parameters()]


# --------------------------------------------------------------------------------------------
# BYOL
# --------------------------------------------------------------------------------------------

def tiny_byol(**kw):
    return BYOL(tiny_backbone(), random_views(), proj_dim=8, hidden_dim=16, pred_hidden_dim=16, **kw)


def test_byol_tau_schedule_values():
    assert cosine_tau(0, 100) == pytest.approx(0.996, abs=1e-12)
    assert cosine_tau(50, 100) == pytest.approx(1 - 0.004 * 0.5, abs=1e-12)  # cos(pi/2) = 0
    assert cosine_tau(100, 100) == pytest.approx(1.0, abs=1e-12)
    assert cosine_tau(25, 100, tau_base=0.99) == pytest.approx(
        1 - 0.01 * (math.cos(math.pi / 4) + 1) / 2, abs=1e-12)


def test_byol_pair_loss_hand_computed():
    p1, p2 = torch.tensor([[1.0, 0.0]]), torch.tensor([[0.0, 2.0]])
    z1, z2 = torch.tensor([[3.0, 4.0]]), torch.tensor([[-1.0, 0.0]])
    # l(p1, z2) = 2 - 2 cos((1,0), (-1,0)) = 4 ; l(p2, z1) = 2 - 2 * 0.8 = 0.4
    assert byol_pair_loss((p1, p2), (z1, z2)).item() == pytest.approx(4.4, abs=1e-6)


def test_byol_target_gets_no_gradient_and_follows_the_ema_formula():
    method = tiny_byol()
    x = images()
    one_step(method, sgd(method), x)
    targets = list(method.target_backbone.parameters()) + list(method.target_projector.parameters())
    assert targets and all(p.grad is None and not p.requires_grad for p in targets)
    assert all(p.grad is not None for p in method.predictor.parameters())

    # the step moved the online network away from the target (both started equal)
    online = snapshot(method.backbone) + snapshot(method.projector)
    before = [p.detach().clone() for p in targets]
    assert max((o - t).abs().max().item() for o, t in zip(online, before)) > 1e-4
    method.after_optimizer_step(5, 10)  # k / K = 1/2: tau = 1 - 0.004 * (cos(pi / 2) + 1) / 2
    tau = 0.998
    for t_new, t_old, o in zip(targets, before, online):
        torch.testing.assert_close(t_new, tau * t_old + (1 - tau) * o, rtol=1e-6, atol=1e-7)
    # BatchNorm buffers are copied from the online network
    for t, o in zip(method.target_backbone.buffers(), method.backbone.buffers()):
        assert torch.equal(t, o)


def test_byol_loss_is_symmetrised_over_online_and_target():
    method = tiny_byol()
    views = fixed_views()
    method.views = (views[0], build_views("crop_flip", SIZE, norm="cifar10")[0])
    x = images()
    out = method.training_step(x, torch.zeros(8, dtype=torch.long), torch.Generator().manual_seed(3))
    g = torch.Generator().manual_seed(3)
    v1, v2 = method.views[0](x, g), method.views[1](x, g)
    _, p1 = method.online_embed(v1)
    _, p2 = method.online_embed(v2)
    z1, z2 = method.target_embed(v1), method.target_embed(v2)
    cos = lambda a, b: F.cosine_similarity(a, b, dim=1)  # noqa: E731
    expected = (2 - 2 * cos(p1, z2)).mean() + (2 - 2 * cos(p2, z1)).mean()
    assert out.loss.item() == pytest.approx(expected.item(), abs=1e-5)


# --------------------------------------------------------------------------------------------
# MoCo v2
# --------------------------------------------------------------------------------------------

def tiny_moco(**kw):
    settings = dict(proj_dim=8, hidden_dim=16, num_negatives=12, bn_group_size=4)
    settings.update(kw)
    return MoCoV2(tiny_backbone(), random_views(), **settings)


def test_moco_infonce_hand_computed():
    q = torch.tensor([[1.0, 0.0]])
    k = torch.tensor([[0.6, 0.8]])
    queue = torch.tensor([[0.0, 1.0], [-1.0, 0.0]])
    # logits (0.6, 0, -1) / 0.2 = (3, 0, -5); positive first
    expected = -math.log(math.exp(3) / (math.exp(3) + 1 + math.exp(-5)))
    assert moco_infonce(q, k, queue, 0.2).item() == pytest.approx(expected, abs=1e-6)


def test_moco_step_loss_queue_and_pointer():
    method = tiny_moco()
    queue_before = method.queue.clone()
    x = images(8)
    out = method.training_step(x, torch.zeros(8, dtype=torch.long), torch.Generator().manual_seed(7))

    # the same draws again: views, then the key shuffle
    g = torch.Generator().manual_seed(7)
    v1, v2 = method.views[0](x, g), method.views[1](x, g)
    _, q = method.query(v1)
    k = method.key(v2, g)
    logits = torch.cat([(q * k).sum(1, keepdim=True), q @ queue_before.t()], dim=1) / 0.2
    assert out.loss.item() == pytest.approx(F.cross_entropy(logits, torch.zeros(8, dtype=torch.long)).item(),
                                            abs=1e-5)
    assert int(method.queue_ptr) == 8
    torch.testing.assert_close(method.queue[:8], k, rtol=0, atol=1e-6)
    torch.testing.assert_close(method.queue[:8].norm(dim=1), torch.ones(8))
    assert torch.equal(method.queue[8:], queue_before[8:])

    method.enqueue(k.flip(0))  # a second batch wraps around the 12-slot ring buffer
    assert int(method.queue_ptr) == 4
    torch.testing.assert_close(method.queue[8:], k.flip(0)[:4], rtol=0, atol=0)
    torch.testing.assert_close(method.queue[:4], k.flip(0)[4:], rtol=0, atol=0)
    torch.testing.assert_close(method.queue[4:8], k[4:], rtol=0, atol=0)


def test_moco_shuffled_keys_come_back_in_order():
    # In eval mode BatchNorm does not depend on the batch, so grouping and shuffling must not
    # change any key: the un-shuffle puts every key back on its own image.
    method = tiny_moco(bn_group_size=2)
    method.eval()
    v = method.views[0](images(8), torch.Generator().manual_seed(1))
    plain = F.normalize(method.key_head(method.key_backbone(v)), dim=1)
    shuffled = method.key(v, torch.Generator().manual_seed(5))
    torch.testing.assert_close(shuffled, plain, rtol=0, atol=1e-5)
    assert method.bn_groups(8) == 4
    assert MoCoV2(tiny_backbone(), fixed_views(), bn_group_size=None).bn_groups(8) == 1


def test_moco_key_encoder_no_gradient_and_momentum_update():
    method = tiny_moco(momentum=0.9)
    one_step(method, sgd(method), images(8))
    keys = list(method.key_backbone.parameters()) + list(method.key_head.parameters())
    assert all(p.grad is None and not p.requires_grad for p in keys)
    before = [p.detach().clone() for p in keys]
    online = snapshot(method.backbone) + snapshot(method.head)
    method.after_optimizer_step(0, 10)
    for new, old, o in zip(keys, before, online):
        torch.testing.assert_close(new, 0.9 * old + 0.1 * o, rtol=1e-6, atol=1e-7)
    assert any((new - old).abs().max() > 1e-5 for new, old in zip(keys, before))


def test_moco_checks_its_arguments():
    with pytest.raises(ConfigError, match="num_negatives"):
        tiny_moco(num_negatives=0)
    method = tiny_moco(num_negatives=4)
    with pytest.raises(ConfigError, match="num_negatives"):
        method.enqueue(torch.ones(8, 8))


# --------------------------------------------------------------------------------------------
# SwAV
# --------------------------------------------------------------------------------------------

def np_sinkhorn(scores, eps, iters):
    q = np.exp(scores / eps).T  # (K, B) as in the paper's notation
    k, b = q.shape
    q /= q.sum()
    for _ in range(iters):
        q /= q.sum(axis=1, keepdims=True) * k
        q /= q.sum(axis=0, keepdims=True) * b
    return (q * b).T


def test_sinkhorn_matches_numpy_and_has_the_marginals():
    rng = np.random.default_rng(0)
    scores = rng.uniform(-1, 1, size=(12, 5))
    codes = sinkhorn_knopp(torch.tensor(scores, dtype=torch.float32), epsilon=0.05, iterations=3)
    np.testing.assert_allclose(codes.numpy(), np_sinkhorn(scores.astype(np.float64), 0.05, 3), atol=1e-5)
    assert (codes >= 0).all()
    torch.testing.assert_close(codes.sum(1), torch.ones(12))  # each sample: a distribution
    # each prototype gets B / K = 2.4 samples in the limit; 3 iterations already come much
    # closer to that than the plain softmax assignment does, many iterations reach it
    uniform = torch.full((5,), 2.4)
    softmax = torch.softmax(torch.tensor(scores, dtype=torch.float32) / 0.05, dim=1)
    assert (codes.sum(0) - uniform).abs().max() < 0.5 * (softmax.sum(0) - uniform).abs().max()
    many = sinkhorn_knopp(torch.tensor(scores, dtype=torch.float32), epsilon=0.05, iterations=200)
    torch.testing.assert_close(many.sum(0), torch.full((5,), 2.4), rtol=0, atol=1e-3)
    # a shift of all scores does not change the codes (the exp is shifted by the max inside)
    torch.testing.assert_close(sinkhorn_knopp(torch.tensor(scores + 30.0, dtype=torch.float32)), codes)


def test_swapped_prediction_loss_direct():
    s1, s2 = torch.tensor([[0.5, -0.2, 0.1]]), torch.tensor([[0.0, 0.3, -0.4]])
    q1, q2 = torch.tensor([[0.7, 0.2, 0.1]]), torch.tensor([[0.1, 0.1, 0.8]])

    def ce(s, q):
        p = np.exp(s / 0.1) / np.exp(s / 0.1).sum()
        return -(q * np.log(p)).sum()

    expected = 0.5 * (ce(s1.numpy()[0], q2.numpy()[0]) + ce(s2.numpy()[0], q1.numpy()[0]))
    assert swapped_prediction_loss(s1, s2, q1, q2, 0.1).item() == pytest.approx(expected, rel=1e-5)


def tiny_swav(**kw):
    return SwAV(tiny_backbone(), random_views(), proj_dim=8, hidden_dim=16, num_prototypes=6, **kw)


def test_swav_prototypes_normalized_after_the_step():
    method = tiny_swav()
    torch.testing.assert_close(method.prototypes.weight.norm(dim=1), torch.ones(6))
    before = method.prototypes.weight.detach().clone()
    one_step(method, sgd(method, lr=0.5), images())
    assert not torch.allclose(method.prototypes.weight.norm(dim=1), torch.ones(6), atol=1e-4)
    method.after_optimizer_step(0, 10)
    torch.testing.assert_close(method.prototypes.weight.norm(dim=1), torch.ones(6))
    assert (method.prototypes.weight - before).abs().max() > 1e-4 and int(method.iteration) == 1


def test_swav_frozen_prototypes_stay_fixed():
    method = tiny_swav(freeze_prototypes_steps=1)
    before = method.prototypes.weight.detach().clone()
    one_step(method, sgd(method, lr=0.5, weight_decay=1e-2), images())
    assert method.prototypes.weight.grad is not None and method.prototypes.weight.grad.abs().max() == 0
    method.after_optimizer_step(0, 10)
    torch.testing.assert_close(method.prototypes.weight, before, rtol=0, atol=1e-6)
    one_step(method, sgd(method, lr=0.5), images())  # iteration 1: no longer frozen
    assert method.prototypes.weight.grad.abs().max() > 0


def test_swav_step_loss_and_queue():
    method = tiny_swav(queue_length=8)
    x = images(8)
    out = method.training_step(x, torch.zeros(8, dtype=torch.long), torch.Generator().manual_seed(2))
    g = torch.Generator().manual_seed(2)
    _, z1, s1 = method.embed(method.views[0](x, g))
    _, z2, s2 = method.embed(method.views[1](x, g))
    # queue not yet full: codes from the batch alone
    expected = swapped_prediction_loss(s1, s2, sinkhorn_knopp(s1), sinkhorn_knopp(s2), 0.1)
    assert out.loss.item() == pytest.approx(expected.item(), abs=1e-5)
    torch.testing.assert_close(method.queue[0], z1, rtol=0, atol=1e-6)
    torch.testing.assert_close(method.queue[1], z2, rtol=0, atol=1e-6)
    assert int(method.queue_filled) == 8
    # full queue: its features join the Sinkhorn input, only the batch's codes come back
    with torch.no_grad():
        queued = method.queue[0] @ method.prototypes.weight.t()
        torch.testing.assert_close(method.codes(s1.detach(), 0),
                                   sinkhorn_knopp(torch.cat([s1, queued]))[:8])


# --------------------------------------------------------------------------------------------
# Supervised and the registry
# --------------------------------------------------------------------------------------------

def test_supervised_loss_is_cross_entropy():
    method = Supervised(tiny_backbone(), fixed_views(), num_classes=4)
    x, labels = images(8), torch.tensor([0, 1, 2, 3, 3, 2, 1, 0])
    out = method.training_step(x, labels, torch.Generator())
    logits = method.classifier(method.backbone(method.views[0](x))).detach().double().numpy()
    log_softmax = logits - np.log(np.exp(logits).sum(1, keepdims=True))
    expected = -log_softmax[np.arange(8), labels.numpy()].mean()
    assert out.loss.item() == pytest.approx(expected, abs=1e-5)
    with pytest.raises(ConfigError, match="labels"):
        method.training_step(x, torch.tensor([0, 1, 2, 3, -1, 2, 1, 0]), torch.Generator())
    with pytest.raises(ConfigError, match="labels"):
        method.training_step(x, None, torch.Generator())


def test_registry_builds_by_name_and_rejects_bad_input():
    assert list_methods() == ["byol", "infomin", "mocov2", "mocov2_tuned", "simclr", "simclrv2", "supervised", "swav"]
    byol = build_method("byol", tiny_backbone(), random_views(), hidden_dim=8, pred_hidden_dim=8)
    assert isinstance(byol, BYOL) and byol.tau_base == 0.996
    v2 = build_method("simclrv2", tiny_backbone(), random_views(), hidden_dim=8, proj_dim=4)
    assert len([m for m in v2.projector.modules() if isinstance(m, torch.nn.Linear)]) == 3  # SimCLRv2's head
    with pytest.raises(ConfigError, match="dino"):
        build_method("dino", tiny_backbone(), random_views())
    with pytest.raises(ConfigError, match="num_classes"):
        build_method("supervised", tiny_backbone(), random_views())
    with pytest.raises(ConfigError, match="tau"):
        build_method("mocov2", tiny_backbone(), random_views(), tau=0.9)


# --------------------------------------------------------------------------------------------
# Each method through the real engine: the loss falls and kNN beats a random backbone
# --------------------------------------------------------------------------------------------

# (method options, views recipe, optimizer settings, steps), for a 16 px, 512-image synthetic set
# and a quarter-width ResNet-20, kNN on 1024 held-out images. Crop + flip views for all but
# SimCLR: colour jitter hides the colour cue of the synthetic classes, and BYOL, MoCo and SwAV
# then learn too slowly for a few dozen steps. MoCo: a one-batch queue and m = 0.99, the
# scale-down of its CIFAR-size settings.
# Measured on a 2-core AMD EPYC, seeds 0..15: kNN margin trained - untrained, mean over the 16
# seeds / smallest single seed / smallest mean of 3 consecutive seeds (= the asserted quantity at
# TEST_SEED_OFFSET 0..13): SimCLR 40 steps +0.127 / +0.055 / +0.073; supervised 40 steps +0.137 /
# +0.039 / +0.081; SwAV 80 steps +0.078 / +0.027 / +0.048; MoCo v2 120 steps +0.082 / +0.013 /
# +0.033; BYOL 200 steps +0.083 / +0.011 / +0.045. (SwAV at 40 steps, MoCo at 60 and BYOL at 120
# had smallest windows of +0.045 / +0.029 / +0.033: too close to a floor.) One seed's margin is
# noisy (the seeds differ by up to 0.15); its mean over 3 seeds is what the test asserts.
SIMCLR_VIEWS = ("simclr", dict(strength=0.5, blur=False))
CROP_FLIP = ("crop_flip", {})
RUNS = {
    "simclr": (dict(proj_dim=32, hidden_dim=64), SIMCLR_VIEWS, dict(lr=0.1), 40),
    "byol": (dict(proj_dim=32, hidden_dim=64, pred_hidden_dim=64), CROP_FLIP, dict(lr=0.1), 200),
    "mocov2": (dict(proj_dim=32, hidden_dim=64, num_negatives=64, momentum=0.99), CROP_FLIP,
               dict(lr=0.06), 120),
    "swav": (dict(proj_dim=32, hidden_dim=64, num_prototypes=30), CROP_FLIP, dict(lr=0.1), 80),
    "supervised": (dict(num_classes=10), CROP_FLIP, dict(lr=0.1), 40),
}
# Asserted mean margin over 3 seeds (chance is 0.10). With no learning at all, the mean of 3
# margins on 1024 test images has a standard deviation of about 0.01, so 0.025 is 2.5 of them.
MARGIN_FLOOR = 0.025


def engine_run(name: str, s: int, out) -> tuple[float, float, list[float]]:
    """(kNN trained, kNN of the same backbone untrained, per-step losses) of one seed."""
    options, (recipe, view_kw), optim, steps = RUNS[name]
    train_set, test_set = synthetic("train", 512, s), synthetic("test", 1024, s)
    backbone = tiny_backbone(seed=s)
    random_acc = knn_top1(backbone, train_set, test_set)
    method = build_method(name, backbone, build_views(recipe, SIZE, norm="cifar10", **view_kw), **options)
    losses = []
    cfg = TrainConfig(batch_size=64, steps=steps, optimizer="sgd", momentum=0.9, weight_decay=5e-4,
                      log_every=steps, ckpt_every=10 * steps, progress=False, seed=s, **optim)
    metrics = train(method, train_set, cfg, out / f"seed{s}",
                    callbacks=[lambda step, state: losses.append(state.last_loss)])
    assert metrics["status"] == "ok" and len(losses) == steps
    return knn_top1(method.backbone, train_set, test_set), random_acc, losses


@pytest.mark.learning
@pytest.mark.parametrize("name", sorted(RUNS))
def test_engine_run_lowers_loss_and_beats_random_backbone(name, tmp_path):
    runs = {}

    def run(s):
        trained, random_acc, runs[s] = engine_run(name, s, tmp_path)
        return trained, random_acc

    assert mean_margin(name, run) > MARGIN_FLOOR
    # MoCo's first step sees the random initial queue (easy negatives): start after it is flushed
    skip = 1 if name == "mocov2" else 0
    window = 8
    falls = [np.mean(losses[skip:skip + window]) - np.mean(losses[-window:]) for losses in runs.values()]
    assert np.mean(falls) > 0, f"{name}: the loss rose on average over the seeds: {falls}"
