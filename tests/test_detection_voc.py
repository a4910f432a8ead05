"""End to end on the real VOC2007 subset: `python -m eval.detection` trains a few iterations on
its train list and evaluates on its test list; bad input exits with code 2."""
import json

import pytest
import torch

from common.backbones import build_backbone
from eval.detection import main


@pytest.fixture()
def encoder(tmp_path):
    net = build_backbone("resnet18", width=0.125)
    path = tmp_path / "encoder.pt"
    torch.save({"backbone": "resnet18", "backbone_kwargs": {"width": 0.125}, "state_dict": net.state_dict()}, path)
    return path


def test_voc2007_train_then_test_list_end_to_end(tmp_path, encoder, shared_data):
    out = tmp_path / "det"
    code = main(["--encoder", str(encoder), "--out", str(out), "--profile", "mini",
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
    assert main(["--encoder", str(tmp_path / "nope.pt"), "--out", str(tmp_path / "o"), "--profile", "smoke"]) == 2
    assert "--encoder" in capsys.readouterr().err
    assert main(["--encoder", str(encoder), "--out", str(tmp_path / "o"), "--profile", "smoke", "itrations=3"]) == 2
    assert "itrations" in capsys.readouterr().err
    assert main(["--encoder", str(encoder), "--out", str(tmp_path / "o"), "--profile", "mini",
                 "--root", str(tmp_path)]) == 2
    assert not (tmp_path / "o" / "metrics.json").exists()
