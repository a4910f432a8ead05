"""Settings the papers give or imply, in the paper profiles (and how the CLIs apply them).

Each test states the paper's (or the cited reference's) setting and checks that the profile and the
code that reads it really use it: CQ's SimCLR temperature, BYOL's own optimizer for CQ-BYOL, the
two different static lambdas of BURN Tables 5 and 7, CQ-B in the ImageNet profile, augmented
transfer, and the FP BatchNorm re-estimation of CQ encoders.
"""
from pathlib import Path

import pytest

from common import profiles
from common.config import train_settings
from common.errors import ConfigError
from cq.pretrain import bn_reestimation_batches, build_cq
from eval import pipeline

REPO = Path(__file__).resolve().parents[1]
PAPER = profiles.load("paper")
SMALL_DATA = profiles.load("paper_small_data")
ALL = {name: profiles.load(name) for name in profiles.names()}


def test_cq_simclr_on_imagenet_uses_simclrs_imagenet_temperature():
    # SimCLR's ImageNet default temperature is 0.1; CQ's lr 0.6 = SimCLR's 0.3 x 512 / 256
    assert PAPER["cq"]["simclr"]["temperature"] == 0.1
    train = train_settings(PAPER, "cq", "simclr")
    assert train["lr"] == pytest.approx(0.3 * train["batch_size"] / 256)


@pytest.mark.parametrize("params", [PAPER, SMALL_DATA], ids=["imagenet", "cifar100"])
def test_cq_byol_gets_byols_published_optimizer_scaled_to_the_batch(params):
    byol, simclr = train_settings(params, "cq", "byol"), train_settings(params, "cq", "simclr")
    assert byol["lr"] == pytest.approx(0.2 * byol["batch_size"] / 256)  # BYOL: base lr 0.2 per 256
    assert byol["weight_decay"] == 1.5e-6 and params["cq"]["byol"]["tau_base"] == 0.996
    assert simclr["weight_decay"] == 1.0e-6 and simclr["lr"] != byol["lr"]
    assert byol["optimizer"] == simclr["optimizer"] == "lars"


def test_train_by_method_reaches_the_run(tmp_path):
    params = {"seed": 0, "cq": {"train": {"lr": 1.0, "steps": 3}, "train_by_method": {"byol": {"lr": 0.25}}}}
    assert train_settings(params, "cq", "byol") == {"lr": 0.25, "steps": 3}
    assert train_settings(params, "cq", "simclr") == {"lr": 1.0, "steps": 3}
    with pytest.raises(ConfigError, match="cq.train_by_method"):
        train_settings({"cq": {"train": {}, "train_by_method": {"byol": 0.1}}}, "cq", "byol")
    with pytest.raises(ConfigError, match="'cq.train'"):
        train_settings({"cq": {}}, "cq", "byol")


def test_burn_static_lambda_of_table5_is_not_table7s_constant():
    with_ablations = {n: p for n, p in ALL.items() if "abl12_static_fs" in p["burn"]["variants"]}
    assert {"smoke", "mini", "paper"} <= set(with_ablations)
    for name, params in with_ablations.items():
        variants = params["burn"]["variants"]
        static, constant = variants["abl12_static_fs"], variants["lambda_constant"]
        assert constant["lambda_constant"] == 0.7, name  # Table 7: "lambda(t) = 0.7" (Sec. 4.2)
        assert static["lambda_constant"] == pytest.approx((0.9 + 0.7) / 2), name  # mean of Eq. 3
        assert static["scheme"] == "unmodified" and "scheme" not in constant


def test_cq_b_runs_in_the_imagenet_profile():
    assert "cq_b" in PAPER["cq"]["variants"]  # the paper's "does not converge" is recorded, not assumed


def test_paper_transfer_trains_on_augmented_crops():
    calls = pipeline.plan(PAPER, "transfer", "suites")
    assert calls and all(c["argv"][c["argv"].index("--mode") + 1] == "augment" for c in calls)


def test_bn_reestimation_is_on_by_default_and_validated():
    for name, params in ALL.items():
        assert bn_reestimation_batches(params["cq"]) > 0, name
    assert bn_reestimation_batches({}) == 20
    assert bn_reestimation_batches({"bn_reestimation": {"enabled": False, "batches": 5}}) == 0
    for bad in ({"enabled": "yes"}, {"batchez": 3}, [1]):
        with pytest.raises(ConfigError, match="bn_reestimation"):
            bn_reestimation_batches({"bn_reestimation": bad})
    smoke = ALL["smoke"]
    assert build_cq(smoke, "simclr", "cq_c", "cifar_resnet20").bn_reestimation_batches == 20


def test_s2bnn_and_its_tuned_moco_v2_follow_s2bnns_published_recipe():
    # S2-BNN's public code: two steps of 200 epochs, Adam 3e-4, batch 256, MoCo v2 augmentation,
    # lr decaying linearly; weight decay 0 (distillation) / 1e-4 (tuned MoCo v2); T = 0.2, K = 65536
    burn = PAPER["burn"]
    assert burn["two_stage"] == ["s2bnn", "mocov2_tuned"] and "mocov2_tuned" in burn["baselines"]
    for method, decay in (("s2bnn", 0.0), ("mocov2_tuned", 1.0e-4)):
        train = train_settings(PAPER, "burn", method)
        assert (train["optimizer"], train["lr"], train["batch_size"], train["schedule"]) == ("adam", 3.0e-4, 256, "linear")
        assert train["weight_decay"] == decay and train["epochs"] == 200  # per step
        assert burn["views"][method]["recipe"] == "mocov2"
    assert burn["methods"]["mocov2_tuned"]["temperature"] == 0.2
    assert burn["methods"]["mocov2_tuned"]["num_negatives"] == 65536
    mapped = (REPO / "reports" / "mapping" / "paper.yaml").read_text()
    assert "Tuned MoCov2 [38]: burn/baseline-mocov2_tuned" in mapped
    assert not [line for line in mapped.splitlines() if line.rstrip().endswith("burn/baseline-mocov2")]


def test_one_stage_baselines_get_burns_total_budget():
    burn_epochs = train_settings(PAPER, "burn", "burn")["epochs"]
    for method in PAPER["burn"]["baselines"]:
        stages = 2 if method in PAPER["burn"]["two_stage"] else 1
        assert stages * train_settings(PAPER, "burn", method)["epochs"] == 2 * burn_epochs, method
