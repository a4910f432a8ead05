"""eval.transfer: the scene preset on an image-folder data set (the real ants/bees folder stands
for Places205 / CUB), and the object preset on CIFAR-10 through the CLI."""
import json

import pytest

import eval.transfer as etr
from tests.engine_fixtures import write_encoder


pytestmark = pytest.mark.filterwarnings("ignore::common.data.PartialDatasetWarning")


@pytest.fixture(scope="module")
def encoder(tmp_path_factory):
    path = tmp_path_factory.mktemp("enc") / "encoder.pt"
    write_encoder(path, width=0.25)
    return path


def test_scene_preset_on_an_image_folder(encoder, tmp_path, shared_data):
    out = tmp_path / "places"
    rc = etr.main(["--encoder", str(encoder), "--dataset", "imagefolder",
                   "--root", str(shared_data / "hymenoptera" / "hymenoptera_data"), "--options", "{load_size: 32}",
                   "--test-split", "val", "--preset", "scene", "--epochs", "4", "--target", "places205-standin",
                   "--out", str(out), "--device", "cpu"])
    assert rc == 0
    m = json.loads((out / "metrics.json").read_text())
    assert m["suite"] == "transfer" and m["target"] == "places205-standin" and m["preset"] == "scene"
    assert m["settings"]["milestones"] == [1, 2, 3] and m["settings"]["weight_decay"] == 1e-5
    assert m["settings"]["lr"] == 0.01 and m["num_classes"] == 2
    assert m["num_train"] == 245 and m["num_test"] == 153  # ants/bees train / val
    assert m["feature_dim"] == 16 and 0 <= m["top1"] <= 1 and m["top5"] == 1.0  # 2 classes: top-2


def test_object_preset_on_cifar10(encoder, tmp_path, shared_data):
    out = tmp_path / "c10"
    rc = etr.main(["--encoder", str(encoder), "--dataset", "cifar10", "--root", str(shared_data / "cifar10"),
                   "--limit", "300", "--epochs", "2", "--lr", "0.5", "--out", str(out), "--device", "cpu"])
    assert rc == 0
    m = json.loads((out / "metrics.json").read_text())
    assert m["preset"] == "object" and m["target"] == "cifar10" and m["settings"]["momentum"] == 0.9
    assert m["settings"]["weight_decay"] == 0.0 and m["num_train"] == 300


def test_unknown_preset_exit_2(encoder, tmp_path, capsys):
    rc = etr.main(["--encoder", str(encoder), "--dataset", "cifar10", "--out", str(tmp_path / "o"), "--preset", "indoor"])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1 and "--preset" in err[0]
