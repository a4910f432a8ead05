"""Adding an SSL method is one class, one registry line and its settings in the profile: a method
defined here (a SimSiam-like toy with Contrastive Quant's NCE interface) is registered, given its
settings, and then trains through both pretraining CLIs (under CQ-C, and as a binary-network
baseline) and passes the profile check, with no other code touched (README "Adding a method")."""
import json

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
import yaml

from common import profiles
from common.errors import ConfigError
from common.heads import MLPHead
from common.methods import registry
from common.methods.base import Encoding, Method, StepOutput
from common.profile_check import validate_params


class Toy(Method):
    """Two views, a projection, negative cosine similarity between them (SimSiam without predictor)."""

    name = "toy"

    def __init__(self, backbone: nn.Module, views: tuple, proj_dim: int = 16):
        super().__init__(backbone)
        self.views = views
        self.projector = MLPHead(backbone.feature_dim, 32, proj_dim)

    def cq_encode(self, x: torch.Tensor) -> Encoding:
        h = self.backbone(self.as_input(x))
        return Encoding(h, self.projector(h))

    def nce(self, a: Encoding, b: Encoding) -> torch.Tensor:
        return -F.cosine_similarity(a.online, b.online.detach(), dim=1).mean()

    def training_step(self, images, labels, generator) -> StepOutput:
        a, b = (self.cq_encode(view(images, generator)) for view in self.views)
        return StepOutput((self.nce(a, b) + self.nce(b, a)) / 2, features=a.features)


def settings(tmp_path):
    params = profiles.load("smoke")
    params["cq"].update(methods=["toy"], toy={"proj_dim": 8})
    params["cq"]["views"]["toy"] = {"recipe": "simclr", "out_size": 32, "norm": "cifar10"}
    params["cq"]["train"].update(steps=2, batch_size=16)
    params["burn"]["baselines"] = ["toy"]
    params["burn"]["methods"]["toy"] = {"proj_dim": 8}
    params["burn"]["views"]["toy"] = {"recipe": "simclr", "out_size": 32, "norm": "cifar10"}
    params["burn"]["train"].update(steps=2, batch_size=16)
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(params))
    return params, path


def test_a_registered_method_trains_under_cq_and_as_a_binary_baseline(tmp_path, monkeypatch):
    monkeypatch.setitem(registry.METHODS, "toy", registry.Entry(Toy))  # the one registry line
    params, path = settings(tmp_path)
    assert "toy" in registry.cq_methods()
    validate_params(params)
    from burn.pretrain import main as burn_main
    from cq.pretrain import main as cq_main

    assert cq_main(["--method", "toy", "--variant", "cq_c", "--backbone", "cifar_resnet20",
                    "--out", str(tmp_path / "cq"), "--params", str(path)]) == 0
    assert burn_main(["--method", "toy", "--backbone", "reactnet_a", "--out", str(tmp_path / "bnn"),
                      "--params", str(path)]) == 0
    for run in ("cq", "bnn"):
        metrics = json.loads((tmp_path / run / "metrics.json").read_text())
        assert metrics["status"] == "ok" and metrics["step"] == 2, run
    assert json.loads((tmp_path / "cq" / "metrics.json").read_text())["method"]["variant"] == "cq_c"


def test_a_method_without_the_nce_interface_is_refused_by_cq_in_one_line(tmp_path, monkeypatch, capsys):
    class NoNCE(Toy):
        nce = Method.nce

    monkeypatch.setitem(registry.METHODS, "toy", registry.Entry(NoNCE))
    params, path = settings(tmp_path)
    assert "toy" not in registry.cq_methods()
    from cq.pretrain import main as cq_main

    code = cq_main(["--method", "toy", "--variant", "cq_c", "--backbone", "cifar_resnet20", "--out", str(tmp_path / "cq"),
                    "--params", str(path)])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "invalid choice: 'toy'" in err[0]
    with pytest.raises(ConfigError, match="cq: method 'toy' is not registered for this paper"):
        validate_params(params)
