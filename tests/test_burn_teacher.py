"""Loading BURN's frozen FP teacher: torchvision and MoCo v2 ResNet-50 files, this project's
encoder.pt, and one clear ConfigError for a wrong or truncated file."""
import pytest
import torch
from torchvision.models import resnet50

from burn.teacher import load_fp_head, load_fp_trunk
from common.checkpoint import save_checkpoint
from common.errors import ConfigError


@pytest.fixture(scope="module")
def tv_state():
    torch.manual_seed(0)
    return resnet50(weights=None).state_dict()  # includes fc.weight / fc.bias (ImageNet classifier)


def assert_loaded(trunk, state):
    own = trunk.state_dict()
    assert set(own) == {k for k in state if not k.startswith("fc.")}
    assert all(torch.equal(own[k], state[k]) for k in own)


def test_torchvision_state_dict_loads(tmp_path, tv_state):
    torch.save(tv_state, tmp_path / "tv.pth")
    trunk, info = load_fp_trunk(tmp_path / "tv.pth", "resnet50")
    assert info["format"] == "torchvision" and trunk.feature_dim == 2048
    assert_loaded(trunk, tv_state)


def test_moco_checkpoint_loads_and_gives_its_head(tmp_path, tv_state):
    sd = {f"module.encoder_q.{k}": v for k, v in tv_state.items() if not k.startswith("fc.")}
    head = {"fc.0.weight": torch.randn(2048, 2048), "fc.0.bias": torch.randn(2048),
            "fc.2.weight": torch.randn(128, 2048), "fc.2.bias": torch.randn(128)}
    sd.update({f"module.encoder_q.{k}": v for k, v in head.items()})
    sd["module.encoder_k.conv1.weight"] = torch.zeros(64, 3, 7, 7)  # the momentum encoder: dropped
    sd["module.queue"] = torch.zeros(128, 16)
    torch.save({"epoch": 800, "arch": "resnet50", "state_dict": sd}, tmp_path / "moco.pth.tar")
    trunk, info = load_fp_trunk(tmp_path / "moco.pth.tar", "resnet50")
    assert info["format"] == "mocov2"
    assert_loaded(trunk, tv_state)
    mlp = load_fp_head(tmp_path / "moco.pth.tar")
    assert torch.equal(mlp.net[0].weight, head["fc.0.weight"]) and torch.equal(mlp.net[2].bias, head["fc.2.bias"])
    assert mlp.out_dim == 128 and not any(p.requires_grad for p in mlp.parameters())


def test_project_encoder_names_its_own_architecture(tmp_path):
    from common.backbones import build_backbone
    torch.manual_seed(0)
    net = build_backbone("resnet18", width=0.25, cifar_stem=True)
    save_checkpoint({"backbone": "resnet18", "backbone_kwargs": {"width": 0.25, "cifar_stem": True},
                     "state_dict": net.state_dict()}, tmp_path / "run" / "encoder.pt")
    trunk, info = load_fp_trunk(tmp_path / "run", "resnet50")  # a folder means its encoder.pt
    assert info["format"] == "project" and info["backbone"] == "resnet18" and trunk.feature_dim == 128
    assert all(torch.equal(v, net.state_dict()[k]) for k, v in trunk.state_dict().items())


def _one_error_line(path, match):
    with pytest.raises(ConfigError, match=match) as err:
        load_fp_trunk(path, "resnet50")
    assert "\n" not in str(err.value) and str(path) in str(err.value)


def test_wrong_and_truncated_files_are_one_clear_error(tmp_path, tv_state):
    extra = dict(tv_state, **{"layer5.0.conv1.weight": torch.zeros(1)})
    torch.save(extra, tmp_path / "extra.pth")
    _one_error_line(tmp_path / "extra.pth", "unexpected")
    missing = {k: v for k, v in tv_state.items() if k != "layer4.2.bn3.weight"}
    torch.save(missing, tmp_path / "missing.pth")
    _one_error_line(tmp_path / "missing.pth", "missing")
    shape = dict(tv_state, **{"conv1.weight": torch.zeros(64, 3, 3, 3)})
    torch.save(shape, tmp_path / "shape.pth")
    _one_error_line(tmp_path / "shape.pth", "wrong shape")
    torch.save(tv_state, tmp_path / "full.pth")
    data = (tmp_path / "full.pth").read_bytes()
    (tmp_path / "cut.pth").write_bytes(data[: len(data) // 2])
    _one_error_line(tmp_path / "cut.pth", "truncated or corrupt")
    torch.save({"weights": [1, 2]}, tmp_path / "junk.pth")
    _one_error_line(tmp_path / "junk.pth", "expected a state dict")


def test_teacher_file_is_imported_by_the_teacher_stage(tmp_path, tv_state):
    """burn.teacher.file: the burn_teacher stage imports the released MoCo v2 file, and the run
    folder it writes serves BURN (trunk) and S2-BNN (head) like a trained teacher."""
    from burn.pretrain import main
    sd = {f"module.encoder_q.{k}": v for k, v in tv_state.items() if not k.startswith("fc.")}
    head = {"fc.0.weight": torch.randn(2048, 2048), "fc.0.bias": torch.randn(2048),
            "fc.2.weight": torch.randn(128, 2048), "fc.2.bias": torch.randn(128)}
    sd.update({f"module.encoder_q.{k}": v for k, v in head.items()})
    torch.save({"epoch": 800, "state_dict": sd}, tmp_path / "moco.pth.tar")
    out = tmp_path / "teacher"
    def argv(out, file):
        return ["--method", "mocov2", "--backbone", "resnet50", "--as-teacher", "--out", str(out),
                "--params", "profiles/smoke.yaml", "burn.backbone_options.resnet50={}", f"burn.teacher.file={file}"]
    assert main(argv(out, tmp_path / "moco.pth.tar")) == 0
    trunk, info = load_fp_trunk(out, None)
    assert info["format"] == "project" and info["backbone"] == "resnet50"
    assert_loaded(trunk, tv_state)
    assert torch.equal(load_fp_head(out).net[2].weight, head["fc.2.weight"])
    assert main(argv(tmp_path / "bad", tmp_path / "no.pth")) == 2
    assert not (tmp_path / "bad").exists()
