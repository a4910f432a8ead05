"""End to end on the real VOC2007 subset: `python -m eval.detection` trains a few iterations on
its train list and evaluates on its test list; bad input exits with code 2."""
import json
from pathlib import Path

import pytest
import torch

from common import profiles
from common.backbones import build_backbone
from eval.detection import main
from eval.detection_config import DetectionConfig, make_config, profile_settings

PROFILES = Path(__file__).resolve().parents[1] / "profiles"
MINI, SMOKE = str(PROFILES / "mini.yaml"), str(PROFILES / "smoke.yaml")


@pytest.fixture()
def encoder(tmp_path):
    net = build_backbone("resnet18", width=0.125)
    path = tmp_path / "encoder.pt"
    torch.save({"backbone": "resnet18", "backbone_kwargs": {"width": 0.125}, "state_dict": net.state_dict()}, path)
    return path


def test_voc2007_train_then_test_list_end_to_end(tmp_path, encoder, shared_data):
    out = tmp_path / "det"
    code = main(["--encoder", str(encoder), "--out", str(out), "--params", MINI,
                 "--root", str(shared_data / "voc2007"), "--trials", "2",
                 "iterations=3", "batch_size=2", "warmup_iters=1", "milestones=[2]",
                 "train_sizes=[96,128]", "test_size=128", "max_size=192", "anchor_sizes=[32,64,128]",
                 "detections_per_image=20", "rpn_pre_nms_test=100", "rpn_post_nms_test=16",
                 "eval_batch_size=10"])
    assert code == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["status"] == "ok" and metrics["trials_ok"] == 2
    assert [t["seed"] for t in metrics["trials"]] == [0, 1]
    trial = metrics["trials"][0]
    assert trial["step"] == 3 and trial["metrics"]["num_images"] == 250  # the whole test list
    assert len(metrics["per_class"]) == 20 and "person" in metrics["per_class"]
    for key in ("AP", "AP50", "AP75"):
        values = metrics[key]["values"]
        assert len(values) == 2 and all(0.0 <= v <= 100.0 for v in values)
        assert metrics[key]["mean"] == pytest.approx(sum(values) / 2)
        assert metrics[key]["std"] == pytest.approx(abs(values[0] - values[1]) / 2)
    prov = metrics["provenance"]
    assert prov["profile"] == "mini" and prov["dataset"] == "voc_det" and "params_hash" in prov


def test_bad_input_exits_2(tmp_path, encoder, capsys):
    assert main(["--encoder", str(tmp_path / "nope.pt"), "--out", str(tmp_path / "o"), "--params", SMOKE]) == 2
    assert "--encoder" in capsys.readouterr().err
    assert main(["--encoder", str(encoder), "--out", str(tmp_path / "o"), "--params", SMOKE, "itrations=3"]) == 2
    assert "itrations" in capsys.readouterr().err
    assert main(["--encoder", str(encoder), "--out", str(tmp_path / "o"), "--params", MINI,
                 "--root", str(tmp_path)]) == 2
    assert not (tmp_path / "o" / "metrics.json").exists()


def test_a_profile_without_detection_settings_runs_the_reference_protocol_on_its_data_root(tmp_path, encoder, capsys):
    """The CLI alone under a profile with no `detection` section (the claims study's): the
    reference protocol's settings, the root from the profile's data.root (here a folder without
    VOC, so it stops with one line naming it), no half-written record."""
    study = str(PROFILES / "study2_cq.yaml")
    out = tmp_path / "o"
    assert main(["--encoder", str(encoder), "--out", str(out), "--params", study]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "voc" in err.lower()
    assert not (out / "metrics.json").exists()
    assert main(["--encoder", str(encoder), "--out", str(out), "--params", study, "--dataset", "synthetic_det",
                 "--trials", "1", "iterations=1", "milestones=[1]", "warmup_iters=1", "batch_size=2",
                 "train_sizes=[64]", "test_size=64", "max_size=96", "anchor_sizes=[16,32,64]",
                 "train_data=[{split: train, options: {num_images: 4, image_size: 64}}]",
                 "test_data={split: test, options: {num_images: 2, image_size: 64}}"]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["status"] == "ok" and metrics["trials"][0]["step"] == 1
    assert metrics["provenance"]["profile"] == "study"
    # what the unset settings were: the reference protocol's
    assert make_config(profile_settings(profiles.load("study2_cq"))) == DetectionConfig()
    assert make_config(profile_settings(profiles.load("mini"))).lr == 0.005
