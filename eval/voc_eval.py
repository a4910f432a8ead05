"""The Pascal VOC detection metric of the reference protocol (docs/protocols.md sec. 3, "Detection";
BURN Table 1, CQ Table 3): detectron2's `PascalVOCDetectionEvaluator` with the VOC2007 setting.

For every class c and IoU threshold t in 0.50, 0.55, ..., 0.95:
  1. the detections of class c over all images are sorted by score, highest first;
  2. each detection d is compared with the ground-truth boxes of c in its image, difficult ones
     included: o = max IoU, g = the gt reaching it (the first one on ties);
     - o > t (strictly) and g difficult:         d is neither TP nor FP (ignored);
     - o > t, g not difficult, g not yet matched: TP, g becomes matched;
     - o > t, g not difficult, g already matched: FP (a duplicate);
     - o <= t (or no gt of c in the image):       FP;
  3. recall = cumTP / npos, npos = number of NON-difficult gts of c; precision = cumTP /
     (cumTP + cumFP);
  4. AP_c(t) = VOC2007 11-point interpolated AP: mean over r in {0, 0.1, ..., 1} of
     max(precision[recall >= r]) (0 when no point reaches r).
AP = mean over the 10 thresholds of the class-mean AP; AP50, AP75 = class-mean AP at 0.5, 0.75.
Values are percentages (x100), as detectron2 prints them. Per class: its AP (mean over the
thresholds), AP50 and AP75.

Coordinates and the +1 pixel convention. The reference evaluator works on the 1-based, inclusive
pixel indices of the VOC XML files: a box (xmin, ymin, xmax, ymax) covers xmax - xmin + 1 pixels
in x, and IoU uses areas (x2 - x1 + 1)(y2 - y1 + 1) and intersections (min x2 - max x1 + 1). The
data sets of this project (common/data/voc.py, synthetic.py) and torchvision's models use 0-based
continuous corners (XML xmin - 1, ymin - 1, xmax, ymax). detectron2 converts its predictions back
with xmin + 1, ymin + 1 before evaluating against the XML; `to_voc_pixels` does the same, to
ground truth and detections alike. Consequence (a check in the tests): after that conversion the
+1 IoU equals the plain continuous IoU of the 0-based boxes, since (x2 - (x1 + 1) + 1) = x2 - x1.

Choices where the reference is silent or accidental:
- Score ties are broken by the order in which detections were added (a stable sort); the
  reference's numpy quicksort leaves tie order unspecified.
- A class with no non-difficult gt in the evaluated set: the reference divides by zero and scores
  the class 0. Here its AP is None in `per_class` and the class is left out of the class means
  (VOC07 test holds every class, so the paper setting is unaffected; small subsets are not
  penalised for classes they do not contain). The names of such classes are listed under
  "absent_classes".
"""
from __future__ import annotations

from collections import defaultdict
from typing import Sequence

import numpy as np

from common.errors import ConfigError

IOU_THRESHOLDS = tuple(round(0.5 + 0.05 * i, 2) for i in range(10))  # 0.50, 0.55, ..., 0.95
# VOC2007's 11 recall points, built exactly as the reference builds them (np.arange), so float
# edge cases (a recall of 3/5 = 0.6 is below arange's 0.6000000000000001) come out the same.
RECALL_POINTS = np.arange(0.0, 1.1, 0.1)


def to_voc_pixels(boxes) -> np.ndarray:
    """0-based continuous (x1, y1, x2, y2) -> the reference's 1-based inclusive pixel indices."""
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    return boxes + np.array([1.0, 1.0, 0.0, 0.0])


def iou_plus_one(box: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    """IoU of one box with each row of `boxes`, all in 1-based inclusive pixel indices
    (the reference's +1 convention: a box [1, 1, 10, 10] has area 100)."""
    iw = np.maximum(np.minimum(boxes[:, 2], box[2]) - np.maximum(boxes[:, 0], box[0]) + 1.0, 0.0)
    ih = np.maximum(np.minimum(boxes[:, 3], box[3]) - np.maximum(boxes[:, 1], box[1]) + 1.0, 0.0)
    inter = iw * ih
    area = (box[2] - box[0] + 1.0) * (box[3] - box[1] + 1.0)
    areas = (boxes[:, 2] - boxes[:, 0] + 1.0) * (boxes[:, 3] - boxes[:, 1] + 1.0)
    return inter / (area + areas - inter)


def voc07_ap_11point(recall: np.ndarray, precision: np.ndarray) -> float:
    """VOC2007 11-point AP: mean over r in {0, 0.1, ..., 1} of max precision at recall >= r."""
    recall, precision = np.asarray(recall, float), np.asarray(precision, float)
    total = 0.0
    for r in RECALL_POINTS:
        reached = recall >= r
        total += precision[reached].max() if reached.any() else 0.0
    return total / len(RECALL_POINTS)


def best_matches(det_images: Sequence, det_boxes: np.ndarray, gts: dict) -> tuple[np.ndarray, np.ndarray]:
    """For each detection (1-based pixel box): its max IoU with the gts of its image and the index
    of that gt (-1 when the image has no gt of the class). Independent of the threshold."""
    overlap = np.full(len(det_images), -np.inf)
    index = np.full(len(det_images), -1, dtype=np.int64)
    for d, image_id in enumerate(det_images):
        gt = gts.get(image_id)
        if gt is None or len(gt[0]) == 0:
            continue
        ious = iou_plus_one(det_boxes[d], gt[0])
        index[d] = int(np.argmax(ious))  # first maximum, as np.argmax in the reference
        overlap[d] = ious[index[d]]
    return overlap, index


def class_ap(det_images: Sequence, det_scores: np.ndarray, det_boxes: np.ndarray, gts: dict,
             thresholds: Sequence[float] = IOU_THRESHOLDS) -> dict[float, float]:
    """AP (fraction) of one class at each threshold.

    det_*: the class's detections over all images (image id, score, 1-based pixel box);
    gts: image id -> (boxes (n, 4) 1-based pixels, difficult bool (n,)) of the class.
    """
    npos = int(sum((~np.asarray(d, bool)).sum() for _, d in gts.values()))
    if npos == 0:
        raise ValueError("class_ap needs at least one non-difficult ground-truth box")
    order = np.argsort(-np.asarray(det_scores, float), kind="stable")
    images = [det_images[i] for i in order]
    boxes = np.asarray(det_boxes, float).reshape(-1, 4)[order]
    overlap, index = best_matches(images, boxes, gts)
    result = {}
    for t in thresholds:
        tp, fp = np.zeros(len(images)), np.zeros(len(images))
        matched = {image_id: np.zeros(len(g[0]), bool) for image_id, g in gts.items()}
        for d, image_id in enumerate(images):
            if overlap[d] > t:  # strictly above the threshold
                g = index[d]
                if gts[image_id][1][g]:
                    continue  # matched a difficult gt: neither TP nor FP
                if matched[image_id][g]:
                    fp[d] = 1  # duplicate of an already matched gt
                else:
                    tp[d], matched[image_id][g] = 1, True
            else:
                fp[d] = 1
        ctp, cfp = np.cumsum(tp), np.cumsum(fp)
        recall = ctp / npos
        precision = ctp / np.maximum(ctp + cfp, np.finfo(np.float64).eps)
        result[t] = voc07_ap_11point(recall, precision)
    return result


class VOCDetectionEvaluator:
    """Collect ground truth and detections image by image, then `evaluate()`.

    Boxes are given in the data sets' 0-based continuous coordinates (see the module docstring);
    labels are 1..num_classes (0 is background), as in `voc_det` / `synthetic_det` targets and
    torchvision's detection outputs.
    """

    def __init__(self, class_names: Sequence[str], thresholds: Sequence[float] = IOU_THRESHOLDS):
        self.class_names = list(class_names)
        self.thresholds = tuple(float(t) for t in thresholds)
        self._gts: dict[int, dict] = defaultdict(dict)         # class -> image -> (boxes, difficult)
        self._dets: dict[int, list] = defaultdict(list)        # class -> [(image, score, box)]
        self._images: set = set()

    def add_ground_truth(self, image_id, boxes, labels, difficult=None) -> None:
        if image_id in self._images:
            raise ConfigError(f"evaluator: image {image_id!r} was added twice")
        self._images.add(image_id)
        boxes = to_voc_pixels(_numpy(boxes))
        labels = _numpy(labels).astype(np.int64).reshape(-1)
        difficult = (np.zeros(len(labels), bool) if difficult is None
                     else _numpy(difficult).astype(bool).reshape(-1))
        self._check_labels(labels, "ground-truth")
        for c in np.unique(labels):
            keep = labels == c
            self._gts[int(c)][image_id] = (boxes[keep], difficult[keep])

    def add_detections(self, image_id, boxes, scores, labels) -> None:
        boxes = to_voc_pixels(_numpy(boxes))
        scores = _numpy(scores).astype(np.float64).reshape(-1)
        labels = _numpy(labels).astype(np.int64).reshape(-1)
        self._check_labels(labels, "detection")
        for box, score, c in zip(boxes, scores, labels):
            self._dets[int(c)].append((image_id, float(score), box))

    def add(self, image_id, target: dict, output: dict) -> None:
        """One image: a data-set target dict and a torchvision detection output dict."""
        self.add_ground_truth(image_id, target["boxes"], target["labels"], target.get("difficult"))
        self.add_detections(image_id, output["boxes"], output["scores"], output["labels"])

    def _check_labels(self, labels: np.ndarray, what: str) -> None:
        if len(labels) and (labels.min() < 1 or labels.max() > len(self.class_names)):
            raise ConfigError(f"evaluator: {what} labels must be in 1..{len(self.class_names)}, "
                              f"got {labels.min()}..{labels.max()}")

    def evaluate(self) -> dict:
        """{"AP", "AP50", "AP75" (percent), "per_class": {name: {"AP", "AP50", "AP75"} or None},
        "per_threshold": {"0.5": class-mean AP, ...}, "absent_classes": [...], "num_images"}."""
        per_class, per_threshold, absent = {}, defaultdict(list), []
        for c, name in enumerate(self.class_names, start=1):
            gts = self._gts.get(c, {})
            if sum(int((~d).sum()) for _, d in gts.values()) == 0:
                per_class[name] = None
                absent.append(name)
                continue
            dets = self._dets.get(c, [])
            aps = class_ap([d[0] for d in dets], np.array([d[1] for d in dets]),
                           np.array([d[2] for d in dets]).reshape(-1, 4), gts, self.thresholds)
            for t, ap in aps.items():
                per_threshold[t].append(ap)
            per_class[name] = {"AP": 100 * float(np.mean(list(aps.values()))),
                               "AP50": 100 * aps.get(0.5, float("nan")),
                               "AP75": 100 * aps.get(0.75, float("nan"))}
        if not per_threshold:
            raise ConfigError("evaluator: no non-difficult ground-truth box in the evaluated images")
        mean_at = {t: 100 * float(np.mean(v)) for t, v in per_threshold.items()}
        return {"AP": float(np.mean(list(mean_at.values()))),
                "AP50": mean_at.get(0.5, float("nan")), "AP75": mean_at.get(0.75, float("nan")),
                "per_class": per_class, "per_threshold": {f"{t:.2f}": v for t, v in mean_at.items()},
                "absent_classes": absent, "num_images": len(self._images)}


def _numpy(x) -> np.ndarray:
    if hasattr(x, "detach"):
        x = x.detach().cpu().numpy()
    return np.asarray(x)
