"""The VOC detection evaluator (eval/voc_eval.py) against hand-computed values."""
import numpy as np
import pytest
import torch
from torchvision.ops import box_iou

from common.errors import ConfigError
from eval.voc_eval import (IOU_THRESHOLDS, VOCDetectionEvaluator, iou_plus_one, to_voc_pixels,
                           voc07_ap_11point)

CLASSES = ["a", "b"]


def _evaluate(gts, dets, classes=CLASSES):
    """gts: image -> (boxes, labels, difficult); dets: image -> (boxes, scores, labels)."""
    ev = VOCDetectionEvaluator(classes)
    for image_id, (boxes, labels, difficult) in gts.items():
        ev.add_ground_truth(image_id, boxes, labels, difficult)
    for image_id, (boxes, scores, labels) in dets.items():
        ev.add_detections(image_id, boxes, scores, labels)
    return ev.evaluate()


def test_thresholds_are_050_to_095():
    assert IOU_THRESHOLDS == (0.5, 0.55, 0.6, 0.65, 0.7, 0.75, 0.8, 0.85, 0.9, 0.95)


def test_iou_plus_one_by_hand():
    # 1-based inclusive pixels: [1,1,10,10] covers 10x10 = 100 pixels; overlap 5x5 with [6,6,15,15].
    ious = iou_plus_one(np.array([1., 1., 10., 10.]),
                        np.array([[6., 6., 15., 15.], [11., 1., 20., 10.], [1., 1., 10., 10.]]))
    np.testing.assert_allclose(ious, [25 / 175, 0.0, 1.0])


def test_voc_pixel_conversion_makes_plus_one_iou_the_continuous_iou():
    g = torch.Generator().manual_seed(0)
    xy = torch.rand(20, 2, generator=g) * 50
    boxes = torch.cat([xy, xy + 1 + torch.rand(20, 2, generator=g) * 40], 1).double()
    np.testing.assert_allclose(to_voc_pixels(boxes[:1]), boxes[:1].numpy() + [[1, 1, 0, 0]])
    ours = np.stack([iou_plus_one(b, to_voc_pixels(boxes)) for b in to_voc_pixels(boxes)])
    np.testing.assert_allclose(ours, box_iou(boxes, boxes).numpy(), rtol=1e-12, atol=1e-12)


def test_11_point_interpolation_on_a_hand_pr_curve():
    recall = np.array([0.25, 0.5, 0.5, 0.75, 1.0])
    precision = np.array([1.0, 1.0, 2 / 3, 0.75, 0.5])
    # r = 0..0.5 (6 points): 1.0; r = 0.6, 0.7: 0.75; r = 0.8, 0.9, 1.0: 0.5
    assert voc07_ap_11point(recall, precision) == pytest.approx((6 + 2 * 0.75 + 3 * 0.5) / 11)
    # recall never reaching a point contributes 0 there
    assert voc07_ap_11point(np.array([0.5]), np.array([1.0])) == pytest.approx(6 / 11)


def test_perfect_detections_give_100():
    gts = {"i0": ([[0, 0, 50, 40], [10, 10, 30, 30]], [1, 2], [False, False]),
           "i1": ([[5, 5, 60, 60]], [1], [False])}
    dets = {k: (b, [0.9] * len(l), l) for k, (b, l, _) in gts.items()}
    out = _evaluate(gts, dets)
    assert out["AP"] == pytest.approx(100) and out["AP50"] == pytest.approx(100)
    assert out["AP75"] == pytest.approx(100)
    assert out["per_class"]["b"] == pytest.approx({"AP": 100, "AP50": 100, "AP75": 100})


def test_known_iou_gives_the_step_between_thresholds():
    gts = {"i0": ([[0, 0, 100, 100]], [1], [False])}
    # IoU 0.72: a match at 0.50 .. 0.70, not from 0.75 on -> AP = 5/10 of the thresholds
    out = _evaluate(gts, {"i0": ([[0, 0, 100, 72]], [0.9], [1])}, ["a"])
    assert out["AP50"] == pytest.approx(100) and out["AP75"] == pytest.approx(0)
    assert out["AP"] == pytest.approx(50)
    assert out["per_threshold"]["0.70"] == pytest.approx(100)
    assert out["per_threshold"]["0.75"] == pytest.approx(0)
    # IoU exactly 0.75 is NOT a match at 0.75 (strictly above); 0.70 still matches
    out = _evaluate(gts, {"i0": ([[0, 0, 100, 75]], [0.9], [1])}, ["a"])
    assert out["AP75"] == pytest.approx(0) and out["AP"] == pytest.approx(50)


def test_detection_on_difficult_box_neither_helps_nor_hurts():
    gts = {"i0": ([[0, 0, 40, 40], [60, 60, 90, 90]], [1, 1], [False, True])}
    on_normal = ([[0, 0, 40, 40]], [0.5], [1])
    both = ([[0, 0, 40, 40], [60, 60, 90, 90]], [0.5, 0.9], [1, 1])  # difficult one ranked first
    a = _evaluate(gts, {"i0": on_normal}, ["a"])
    b = _evaluate(gts, {"i0": both}, ["a"])
    assert a["AP"] == pytest.approx(100) and b["AP"] == pytest.approx(100)
    # the same detection counts as a false positive when the box is not marked difficult,
    # and the missed difficult box would cost recall if it counted as a positive
    c = _evaluate({"i0": (gts["i0"][0], [1, 1], [False, False])}, {"i0": on_normal}, ["a"])
    assert c["AP50"] == pytest.approx(100 * 6 / 11)


def test_match_goes_to_the_highest_iou_gt_even_if_difficult():
    # the detection overlaps the difficult gt more (IoU 0.8) than the normal one (IoU 0.6):
    # it is matched to the difficult gt and ignored, as in the reference; the normal gt stays missed
    gts = {"i0": ([[0, 0, 100, 100], [0, 0, 100, 80]], [1, 1], [False, True])}
    out = _evaluate(gts, {"i0": ([[0, 0, 100, 64]], [0.9], [1])}, ["a"])
    assert out["AP50"] == pytest.approx(0)


def test_duplicates_are_false_positives():
    gts = {"i0": ([[0, 0, 50, 50]], [1], [False]), "i1": ([[0, 0, 50, 50]], [1], [False])}
    clean = {"i0": ([[0, 0, 50, 50]], [0.9], [1]), "i1": ([[0, 0, 50, 50]], [0.7], [1])}
    dup = {"i0": ([[0, 0, 50, 50], [1, 0, 50, 50]], [0.9, 0.8], [1, 1]), "i1": clean["i1"]}
    assert _evaluate(gts, clean, ["a"])["AP50"] == pytest.approx(100)
    # TP, FP, TP: recall .5 .5 1, precision 1 .5 2/3 -> (6 * 1 + 5 * 2/3) / 11
    assert _evaluate(gts, dup, ["a"])["AP50"] == pytest.approx(100 * (6 + 5 * 2 / 3) / 11)


def test_ap_is_mean_over_thresholds_of_class_means_and_absent_classes():
    gts = {"i0": ([[0, 0, 100, 100], [0, 0, 10, 10]], [1, 2], [False, False])}
    dets = {"i0": ([[0, 0, 100, 72], [0, 0, 10, 10]], [0.9, 0.9], [1, 2])}
    out = _evaluate(gts, dets, ["a", "b", "c"])
    assert out["per_class"]["a"]["AP"] == pytest.approx(50)
    assert out["per_class"]["b"]["AP"] == pytest.approx(100)
    assert out["AP"] == pytest.approx(75) and out["AP75"] == pytest.approx(50)
    assert out["per_class"]["c"] is None and out["absent_classes"] == ["c"]


def test_bad_labels_are_rejected():
    ev = VOCDetectionEvaluator(["a"])
    with pytest.raises(ConfigError, match="labels"):
        ev.add_ground_truth("i0", [[0, 0, 1, 1]], [2])
