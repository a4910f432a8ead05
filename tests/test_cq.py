"""Contrastive Quant: the exact forwards and NCE pairs of each variant, the baseline, BYOL's target."""
import copy

import pytest
import torch

from common.backbones import build_backbone
from common.engine import train
from common.errors import ConfigError
from common.losses import nt_xent
from common.methods.byol import BYOL, cosine_tau
from common.methods.simclr import SimCLR
from common.quant import get_precision, parse_precision_set
from common.views import build_views
from cq.method import ContrastiveQuant
from cq.objectives import Key, plan
from tests.engine_fixtures import tiny_config, tiny_dataset
from tests.learning import knn_top1, mean_margin, synthetic

PSET = "6-16"


def make_base(kind: str, views: str = "simclr", seed: int = 0):
    torch.manual_seed(seed)
    backbone = build_backbone("cifar_resnet20", width=0.5)
    pipes = build_views(views, 16, **({"strength": 0.5, "blur": False} if views == "simclr" else {}),
                        norm="cifar10")
    if kind == "simclr":
        return SimCLR(backbone, pipes, proj_dim=8, hidden_dim=16)
    return BYOL(backbone, pipes, proj_dim=8, hidden_dim=16, pred_hidden_dim=16)


def make_cq(kind, variant, precisions=PSET):
    views = "none" if variant == "cq_quant" else "simclr"
    return ContrastiveQuant(make_base(kind, views), variant, precisions)


def batch(n=8):
    data = tiny_dataset(32)
    images = torch.stack([data[i][0] for i in range(n)])
    labels = torch.tensor([data[i][1] for i in range(n)])
    return images, labels


EXPECTED = {  # (keys encoded, NCE pairs summed) in the paper's notation, q1 / q2 symbolic
    "baseline": ([(1, None), (2, None)], [((1, None), (2, None))]),
    "cq_a": ([(1, "q1"), (2, "q2")], [((1, "q1"), (2, "q2"))]),
    "cq_b": ([(1, "q1"), (1, "q2"), (2, "q1"), (2, "q2")],
             [((1, "q1"), (2, "q1")), ((1, "q2"), (2, "q2"))]),
    "cq_c": ([(1, "q1"), (1, "q2"), (2, "q1"), (2, "q2")],
             [((1, "q1"), (2, "q1")), ((1, "q2"), (2, "q2")), ((1, "q1"), (1, "q2")), ((2, "q1"), (2, "q2"))]),
    "cq_quant": ([(0, "q1"), (0, "q2")], [((0, "q1"), (0, "q2"))]),
}


def instrument(cq, images, generator_seed):
    """Run one step and record every encoder forward (which view, which precision) and every
    NCE pair, identifying views by value against independently computed views."""
    g = torch.Generator().manual_seed(generator_seed)
    views_ref = {}
    g_ref = torch.Generator().manual_seed(generator_seed)
    pipes = cq.base.views
    if cq.variant == "cq_quant":
        views_ref[0] = pipes[0](images, g_ref)
    else:
        views_ref[1], views_ref[2] = pipes[0](images, g_ref), pipes[1](images, g_ref)

    def which_view(x):
        hits = [v for v, ref in views_ref.items() if torch.equal(x, ref)]
        assert len(hits) == 1
        return hits[0]

    online, target, pairs, names = [], [], [], {}
    real_online, real_target, real_nce = cq.encode_online, cq.encode_target, cq.nce

    def rec_online(x, bits):
        enc = real_online(x, bits)
        assert get_precision(cq.base.backbone) == bits  # really encoded at that width
        key = (which_view(x), bits)
        online.append(key)
        names[id(enc)] = key
        return enc

    def rec_target(x, bits):
        z = real_target(x, bits)
        target.append((which_view(x), bits, get_precision(cq.base.target_backbone)))
        return z

    def rec_nce(a, b):
        pairs.append((names[id(a)], names[id(b)]))
        return real_nce(a, b)

    cq.encode_online, cq.encode_target, cq.nce = rec_online, rec_target, rec_nce
    try:
        out = cq.training_step(images, torch.zeros(len(images), dtype=torch.long), g)
    finally:
        del cq.encode_online, cq.encode_target, cq.nce  # back to the class's methods
    return out, online, target, pairs


@pytest.mark.parametrize("kind", ["simclr", "byol"])
@pytest.mark.parametrize("variant", list(EXPECTED))
def test_exact_forwards_and_nce_pairs(kind, variant):
    cq = make_cq(kind, variant)
    images, _ = batch()
    pset = parse_precision_set(PSET)
    for seed in range(3):
        out, online, target, pairs = instrument(cq, images, seed)
        q = {"q1": online[0][1], "q2": online[1][1]}  # every plan starts with (., q1), (., q2)
        keys, expected_pairs = EXPECTED[variant]
        resolve = lambda k: (k[0], q.get(k[1], k[1]))
        assert online == [resolve(k) for k in keys]
        assert pairs == [(resolve(a), resolve(b)) for a, b in expected_pairs]
        if variant != "baseline":
            assert q["q1"] in pset and q["q2"] in pset and q["q1"] != q["q2"]
        if kind == "byol":  # target: same (view, precision) features, at the matching width
            assert target == [(v, b, b) for v, b in online]
        else:
            assert target == []
        assert get_precision(cq.base.backbone) is None  # left at full precision after the step
        assert torch.isfinite(out.loss)


def test_plan_matches_the_equations():
    f1, f2, f1p, f2p = Key(1, 6), Key(1, 9), Key(2, 6), Key(2, 9)
    assert plan("cq_b", 6, 9).pairs == ((f1, f1p), (f2, f2p))  # Eq. 7
    assert plan("cq_c", 6, 9).pairs == ((f1, f1p), (f2, f2p), (f1, f2), (f1p, f2p))  # Eq. 8
    assert plan("cq_a", 6, 9).keys == (Key(1, 6), Key(2, 9))  # Eq. 4
    with pytest.raises(ConfigError):
        plan("cq_d", 6, 9)
    with pytest.raises(ConfigError):
        plan("cq_a")


def test_loss_is_the_sum_of_the_pairs_nce():
    cq = make_cq("simclr", "cq_c")
    images, _ = batch()
    encoded = {}
    real = cq.encode_online

    def keep(x, bits):
        enc = real(x, bits)
        encoded.setdefault(bits, []).append(enc)
        return enc

    cq.encode_online = keep
    out = cq.training_step(images, None, torch.Generator().manual_seed(3))
    (q1, (e1, e1p)), (q2, (e2, e2p)) = [(k, v) for k, v in encoded.items()]
    t = cq.base.temperature
    direct = (nt_xent(e1.online, e1p.online, t) + nt_xent(e2.online, e2p.online, t)
              + nt_xent(e1.online, e2.online, t) + nt_xent(e1p.online, e2p.online, t))
    assert torch.allclose(out.loss, direct, atol=1e-6)


def test_single_member_precision_set_uses_it_twice():
    cq = make_cq("simclr", "cq_b", precisions="8")
    _, online, _, _ = instrument(cq, batch()[0], 0)
    assert [b for _, b in online] == [8, 8, 8, 8]


@pytest.mark.parametrize("kind", ["simclr", "byol"])
def test_baseline_equals_the_base_method_bit_for_bit(kind):
    images, labels = batch()
    plain = make_base(kind)
    cq = ContrastiveQuant(make_base(kind), "baseline", PSET)
    out_plain = plain.training_step(images, labels, torch.Generator().manual_seed(7))
    out_cq = cq.training_step(images, labels, torch.Generator().manual_seed(7))
    assert torch.equal(out_plain.loss, out_cq.loss)
    out_plain.loss.backward()
    out_cq.loss.backward()
    for (name, p), q in zip(plain.named_parameters(), cq.base.parameters()):
        assert (p.grad is None) == (q.grad is None), name
        if p.grad is not None:
            assert torch.equal(p.grad, q.grad), name


def test_quantized_step_differs_from_full_precision():
    images, labels = batch()
    fp = ContrastiveQuant(make_base("simclr"), "baseline", PSET)
    q = ContrastiveQuant(make_base("simclr"), "cq_a", "4")
    a = fp.training_step(images, labels, torch.Generator().manual_seed(1)).loss
    b = q.training_step(images, labels, torch.Generator().manual_seed(1)).loss
    assert not torch.equal(a, b)


def test_byol_target_gets_no_gradient_and_moves_by_the_ema_formula():
    cq = make_cq("byol", "cq_c")
    images, labels = batch()
    cq.training_step(images, labels, torch.Generator().manual_seed(0)).loss.backward()
    base = cq.base
    assert all(p.grad is None and not p.requires_grad for p in base.target_backbone.parameters())
    assert all(p.grad is None for p in base.target_projector.parameters())
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in base.backbone.parameters())
    with torch.no_grad():
        for p in base.backbone.parameters():
            p.add_(0.1)
    before = copy.deepcopy(base.target_backbone.state_dict())
    online = {k: v.clone() for k, v in base.backbone.state_dict().items()}
    cq.after_optimizer_step(3, 10)
    tau = cosine_tau(3, 10, base.tau_base)
    name = "layer1.0.conv1.weight"
    expected = tau * before[name] + (1 - tau) * online[name]
    assert torch.allclose(base.target_backbone.state_dict()[name], expected, atol=1e-7)


def test_precision_draws_resume_from_the_checkpointed_generator():
    cq = make_cq("simclr", "cq_a")
    for _ in range(3):
        cq.draw()
    state = copy.deepcopy(cq.state_dict())
    ahead = [cq.draw() for _ in range(4)]
    twin = make_cq("simclr", "cq_a")
    twin.load_state_dict(state)
    assert [twin.draw() for _ in range(4)] == ahead
    assert int(twin.precision_counts.sum()) == int(cq.precision_counts.sum())


def test_bad_arguments():
    with pytest.raises(ConfigError, match="variant"):
        ContrastiveQuant(make_base("simclr"), "cq_z")
    with pytest.raises(ConfigError, match="precision"):
        ContrastiveQuant(make_base("simclr"), "cq_a", "16-4")
    with pytest.raises(ConfigError, match="target_precision"):
        ContrastiveQuant(make_base("byol"), "cq_a", target_precision="half")


# CQ-A/B/C: 160 steps of LARS lr 1.0, kNN on 1024 held-out images, mean margin over 3 seeds
# (5 for CQ-B). Measured on a 2-core AMD EPYC, before the FP BatchNorm re-estimation of CQ
# encoders existed: CQ-A over seeds 0..9 +0.094 mean, +0.021 smallest single seed, +0.071 smallest
# mean of 3 consecutive seeds. With it (as now), means of 3 at TEST_SEED_OFFSET 1 / 2 / 3 / 7 / 13:
# CQ-A +0.071 / +0.073 / +0.120 / +0.104 / +0.132, CQ-C +0.138 / +0.138 / +0.126 / +0.126 / +0.165,
# CQ-B +0.044 / +0.034 / +0.082 / +0.070 / +0.156 with one seed at -0.041: CQ-B is the variant
# the paper calls unstable, so its mean is taken over 5 seeds. With no learning, the mean of 3
# margins has a standard deviation of about 0.01.
MARGIN_FLOOR = 0.025
SEEDS = {"cq_b": (0, 1, 2, 3, 4)}
# CQ-Quant has no input augmentation (quantization noise is its only perturbation; lr 0.3). At
# this scale its kNN margin is not distinguishable from zero on every seed. Measured: 80 steps at
# 6-16 bits, seeds 0-2: +0.007 / +0.070 / +0.006; 160 steps, seeds 0-3: +0.060 / +0.029 / +0.010 /
# -0.017; 80 steps at the harsher set 2-5, seeds 0-7: mean +0.019, single seeds -0.059 .. +0.089.
# So its test asserts what the objective does robustly (the NCE loss falls on every seed by at
# least 5 %; seeds 0-2 fell by 13-18 %) and that the encoder is not made worse than untrained
# (mean margin > -0.02); the kNN claim for CQ-Quant (CQ Table 8) belongs to the claims study.
# With the FP BatchNorm re-estimation, means of 3 at offsets 1 / 2 / 3 / 7 / 13: +0.012 / +0.003 /
# +0.014 / +0.041 / +0.015 (single seeds down to -0.043).
QUANT_FLOOR = -0.02
STEPS = {"cq_a": 160, "cq_b": 160, "cq_c": 160, "cq_quant": 80}


def cq_run(variant: str, lr: float, s: int, out) -> tuple[float, float, float]:
    """(kNN trained, kNN untrained, relative loss fall) of one seed's run."""
    cq = ContrastiveQuant(make_base("simclr", "none" if variant == "cq_quant" else "simclr", seed=s), variant, PSET)
    random_init = copy.deepcopy(cq.base.backbone)
    losses = []
    train_set, test_set = synthetic("train", 512, s), synthetic("test", 1024, s)
    cfg = tiny_config(steps=STEPS[variant], batch_size=32, lr=lr, ckpt_every=1000, log_every=10, seed=s)
    train(cq, train_set, cfg, out / f"seed{s}", callbacks=[lambda _, st: losses.append(st.last_loss)])
    first, last = sum(losses[:10]) / 10, sum(losses[-10:]) / 10
    fall = (first - last) / first
    return knn_top1(cq.base.backbone, train_set, test_set), knn_top1(random_init, train_set, test_set), fall


@pytest.mark.learning
@pytest.mark.parametrize("variant,lr", [("cq_a", 1.0), ("cq_b", 1.0), ("cq_c", 1.0), ("cq_quant", 0.3)])
def test_short_run_lowers_loss_and_beats_random_init_in_knn(tmp_path, variant, lr):
    falls = []

    def run(s):
        trained, untrained, fall = cq_run(variant, lr, s, tmp_path)
        falls.append(fall)
        return trained, untrained

    margin = mean_margin(variant, run, SEEDS.get(variant, (0, 1, 2)))
    print(f"{variant}: relative loss falls {[round(f, 3) for f in falls]}")
    if variant == "cq_quant":
        assert margin > QUANT_FLOOR and min(falls) > 0.05
    else:
        assert margin > MARGIN_FLOOR and sum(falls) > 0
