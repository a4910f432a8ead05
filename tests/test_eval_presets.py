"""The protocol presets hold docs/protocols.md's numbers (section 3, and section 1 for CQ), written
here independently of eval/presets.py."""
import pytest

from common.errors import ConfigError
from eval.presets import FINETUNE_PRESETS, LINEAR_PRESETS, TRANSFER_PRESETS, get_preset, parse_floats


def fields(p):
    return (p.epochs, p.lr, p.momentum, p.nesterov, p.weight_decay, p.schedule, p.milestones, p.gamma)


def test_burn_linear_evaluation():
    # "SGD momentum 0.9, lr 30, x0.1 at epochs 60 and 80, 100 epochs, no weight decay"
    assert fields(LINEAR_PRESETS["burn"]) == (100, 30.0, 0.9, False, 0.0, "step", (60, 80), 0.1)


def test_cq_linear_evaluation():
    # CIFAR-100: "50 epochs, lr 0.1 cosine"; ImageNet: "90 epochs, Nesterov 0.9, lr 0.2, batch 512,
    # no weight decay"
    cifar, imagenet = LINEAR_PRESETS["cq"], LINEAR_PRESETS["cq_imagenet"]
    assert (cifar.epochs, cifar.lr, cifar.schedule, cifar.momentum) == (50, 0.1, "cosine", 0.9)
    assert (imagenet.epochs, imagenet.lr, imagenet.momentum, imagenet.nesterov) == (90, 0.2, 0.9, True)
    assert imagenet.batch_size == 512 and imagenet.weight_decay == 0.0


def test_burn_semi_supervised_fine_tuning():
    # "SGD momentum 0.9, weight decay 5e-4, 20 epochs, lr x0.2 at epochs 12 and 16; sweep backbone
    # lr in {0.1, 0.01, 0.001} x head multiplier {1, 10, 100}"
    burn = FINETUNE_PRESETS["burn"]
    t = burn.train
    assert (t.epochs, t.momentum, t.nesterov, t.weight_decay, t.schedule, t.milestones, t.gamma) == \
        (20, 0.9, False, 5e-4, "step", (12, 16), 0.2)
    assert burn.backbone_lrs == (0.1, 0.01, 0.001) and burn.head_multipliers == (1, 10, 100)
    assert len(burn.grid()) == 9


def test_cq_fine_tuning():
    # "SGD Nesterov momentum 0.9, no weight decay, batch 512, cosine from lr 0.1; ImageNet 30 epochs
    # (10%) / 60 epochs (1%); CIFAR-100 50 epochs"
    for name, epochs in (("cq", 50), ("cq_imagenet", 30)):
        t = FINETUNE_PRESETS[name].train
        assert (t.lr, t.momentum, t.nesterov, t.weight_decay, t.batch_size, t.schedule) == \
            (0.1, 0.9, True, 0.0, 512, "cosine")
        assert t.epochs == epochs
    assert FINETUNE_PRESETS["cq_imagenet"].epochs_for(0.01) == 60


def test_transfer_presets():
    # object-centric "as linear eval above"; Places205 "28 epochs, lr 0.01, x0.1 every 7 epochs,
    # momentum 0.9, weight decay 1e-5"
    assert fields(TRANSFER_PRESETS["object"]) == fields(LINEAR_PRESETS["burn"])
    assert fields(TRANSFER_PRESETS["scene"]) == (28, 0.01, 0.9, False, 1e-5, "step", (7, 14, 21), 0.1)


def test_overrides_scale_the_milestones():
    assert LINEAR_PRESETS["burn"].scaled(epochs=10).milestones == (6, 8)
    assert TRANSFER_PRESETS["scene"].scaled(epochs=4).milestones == (1, 2, 3)
    assert FINETUNE_PRESETS["burn"].train.scaled(epochs=5, lr=0.5, batch_size=7).milestones == (3, 4)
    p = LINEAR_PRESETS["burn"].scaled(lr=2.0, batch_size=16)
    assert (p.lr, p.batch_size, p.epochs, p.milestones) == (2.0, 16, 100, (60, 80))
    with pytest.raises(ConfigError, match="epochs"):
        LINEAR_PRESETS["burn"].scaled(epochs=0)
    with pytest.raises(ConfigError, match="--preset"):
        get_preset(LINEAR_PRESETS, "moco", "linear evaluation")
    assert parse_floats("0.1,0.01", "--lrs") == (0.1, 0.01)
    with pytest.raises(ConfigError, match="--lrs"):
        parse_floats("0.1,-1", "--lrs")
