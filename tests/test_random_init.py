"""common.random_init: CQ Table 8's "No SSL Training" encoder is exactly the weights every CQ run of
the same seed starts from, and it loads wherever a pretrained encoder does."""
import json

import torch

from common.backbones import build_backbone
from common.engine import load_encoder
from cq.pretrain import build_cq
from common.random_init import main

SMOKE = "profiles/smoke.yaml"


def test_random_init_is_the_common_starting_point(tmp_path):
    assert main(["--backbone", "cifar_resnet20", "--out", str(tmp_path / "r"), "--params", SMOKE]) == 0
    params = {"seed": 0, "precision": "6-16",
              "cq": {"backbone_options": {"cifar_resnet20": {"width": 0.25}}, "quant": {"mode": "floor"},
                     "views": {"simclr": {"recipe": "simclr", "out_size": 32}}, "simclr": {"proj_dim": 8}}}
    start = build_cq(params, "simclr", "cq_c", "cifar_resnet20").encoder_state_dict()
    saved = load_encoder(tmp_path / "r" / "encoder.pt")
    assert saved["backbone"] == "cifar_resnet20" and saved["backbone_kwargs"] == {"width": 0.25}
    assert set(saved["state_dict"]) == set(start)
    assert all(torch.equal(saved["state_dict"][k], start[k]) for k in start)
    net = build_backbone(saved["backbone"], **saved["backbone_kwargs"])
    load_encoder(tmp_path / "r" / "encoder.pt", net)  # strict
    metrics = json.loads((tmp_path / "r" / "metrics.json").read_text())
    assert metrics["status"] == "ok" and metrics["step"] == 0 and metrics["provenance"]["profile"] == "smoke"
    # another seed, other weights
    assert main(["--backbone", "cifar_resnet20", "--out", str(tmp_path / "s"), "--params", SMOKE, "seed=1"]) == 0
    other = load_encoder(tmp_path / "s" / "encoder.pt")["state_dict"]
    assert not torch.equal(other["conv1.weight"], start["conv1.weight"])


def test_unknown_backbone_is_one_clear_error(tmp_path, capsys):
    assert main(["--backbone", "nope", "--out", str(tmp_path / "r"), "--params", SMOKE]) == 2
    assert capsys.readouterr().err.startswith("error: ") and not (tmp_path / "r").exists()


def test_the_untrained_binary_student_is_where_every_burn_run_of_the_seed_starts(tmp_path):
    from burn.pretrain import RunSpec, build_method
    from common.binary import get_binary_stage
    from common.config import load_params

    out = tmp_path / "b"
    assert main(["--section", "burn", "--backbone", "reactnet_a", "--out", str(out), "--params", SMOKE, "seed=3"]) == 0
    saved = load_encoder(out / "encoder.pt")
    assert saved["backbone_kwargs"] == {"width": 0.125, "small_images": True} and saved["binary_stage"] == 2
    params = load_params(SMOKE, ["seed=3"])
    model, _ = build_method(params, RunSpec("mocov2", "reactnet_a", "unused"), 10)
    start = model.backbone.state_dict()
    assert set(saved["state_dict"]) == set(start)
    assert all(torch.equal(saved["state_dict"][k], start[k]) for k in start)
    net = build_backbone("reactnet_a", **saved["backbone_kwargs"])
    load_encoder(out / "encoder.pt", net)
    assert get_binary_stage(net) == 2


def test_an_unknown_section_is_one_clear_error(tmp_path, capsys):
    assert main(["--section", "bnn", "--backbone", "cifar_resnet20", "--out", str(tmp_path / "r"), "--params", SMOKE]) == 2
    assert "--section 'bnn'" in capsys.readouterr().err and not (tmp_path / "r").exists()
