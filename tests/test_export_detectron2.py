"""detectron2 export (eval/export_detectron2.py): key scheme, shapes and values of a ResNet-50."""
import pickle

import numpy as np
import torch
import torchvision

from eval.export_detectron2 import detectron2_name, main

NORM = ("weight", "bias", "running_mean", "running_var")


def detectron2_r50_shapes() -> dict[str, tuple]:
    """detectron2's R50 names and shapes, written from the architecture (He et al. Table 1)."""
    shapes = {"stem.conv1.weight": (64, 3, 7, 7)}
    shapes.update({f"stem.conv1.norm.{f}": (64,) for f in NORM})
    in_ch = 64
    for stage, blocks in zip((2, 3, 4, 5), (3, 4, 6, 3)):
        planes = 64 * 2 ** (stage - 2)
        for b in range(blocks):
            prefix = f"res{stage}.{b}"
            convs = {"conv1": (planes, in_ch, 1, 1), "conv2": (planes, planes, 3, 3),
                     "conv3": (4 * planes, planes, 1, 1)}
            if b == 0:
                convs["shortcut"] = (4 * planes, in_ch, 1, 1)
            for conv, shape in convs.items():
                shapes[f"{prefix}.{conv}.weight"] = shape
                shapes.update({f"{prefix}.{conv}.norm.{f}": (shape[0],) for f in NORM})
            in_ch = 4 * planes
    return shapes


def test_resnet50_export_matches_detectron2_scheme(tmp_path):
    torch.manual_seed(0)
    model = torchvision.models.resnet50(weights=None)
    for m in model.modules():  # non-trivial statistics so that a swapped field would show
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.normal_()
            m.running_var.uniform_(0.5, 2)
            m.bias.data.normal_()
    state = model.state_dict()
    ckpt = tmp_path / "encoder.pt"
    torch.save({"backbone": "resnet50", "backbone_kwargs": {}, "state_dict": state}, ckpt)
    out = tmp_path / "r50.pkl"
    assert main([str(ckpt), str(out)]) == 0
    with open(out, "rb") as f:
        payload = pickle.load(f)
    assert payload["matching_heuristics"] is True and "__author__" in payload
    exported = payload["model"]
    expected = detectron2_r50_shapes()
    assert set(exported) == set(expected)
    for name, shape in expected.items():
        assert exported[name].shape == shape, name
        assert isinstance(exported[name], np.ndarray)
    # values: spot checks by hand-written correspondences, then every array
    np.testing.assert_array_equal(exported["stem.conv1.norm.running_var"], state["bn1.running_var"].numpy())
    np.testing.assert_array_equal(exported["res5.0.shortcut.norm.bias"], state["layer4.0.downsample.1.bias"].numpy())
    np.testing.assert_array_equal(exported["res3.2.conv2.norm.running_mean"], state["layer2.2.bn2.running_mean"].numpy())
    for key, value in state.items():
        if key.startswith("fc.") or key.endswith("num_batches_tracked"):
            continue
        np.testing.assert_array_equal(exported[detectron2_name(key)], value.numpy())


def test_bad_inputs_exit_2(tmp_path, capsys):
    ckpt = tmp_path / "encoder.pt"
    torch.save({"backbone": "reactnet_a", "state_dict": {"stem.conv.weight": torch.zeros(1)}}, ckpt)
    assert main([str(ckpt), str(tmp_path / "x.pkl")]) == 2
    assert "reactnet_a" in capsys.readouterr().err
    torch.save({"state_dict": {"conv1.weight": torch.zeros(1), "head.weight": torch.zeros(1)}}, ckpt)
    assert main([str(ckpt), str(tmp_path / "x.pkl")]) == 2
    assert main([str(tmp_path / "missing.pt"), str(tmp_path / "x.pkl")]) == 2
    assert not (tmp_path / "x.pkl").exists()
