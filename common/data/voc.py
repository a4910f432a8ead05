"""PASCAL VOC (Everingham et al.): multi-label classification (`voc07_cls`, the BURN SVM suite,
Tables 3 and 9) and detection (`voc_det`, BURN Table 1 / CQ Table 3).

Root: the folder containing `VOCdevkit/` (like torchvision), the `VOCdevkit/` folder, or the
`VOC<year>` folder itself. Splits: train, val, trainval, test, read from
`ImageSets/Main/<split>.txt`.

`voc07_cls` item: `(uint8 (3, load_size, load_size), float tensor (20,))`, the image shorter-side
resized and centre-cropped (see `common.data.decode`), labels from the per-class files
`ImageSets/Main/<class>_<split>.txt`: 1 present, 0 only difficult instances, -1 absent.

`voc_det` item: `(uint8 (3, H, W) at the ORIGINAL size, target)` with target = {"boxes":
FloatTensor[n, 4] x1y1x2y2 in pixels, "labels": LongTensor[n] in 1..20 (0 is background),
"difficult": BoolTensor[n], "size": LongTensor[2] = (H, W), "image_id": str}. Images keep their
size because the detection protocol resizes per batch (shorter side 480..800, test 800); these
items therefore do not stack and need a list-collate.

Choices where the papers are silent:
- Box convention: VOC XML corners are 1-based pixel indices; boxes here are
  (xmin - 1, ymin - 1, xmax, ymax), i.e. 0-based continuous pixel coordinates inside [0, W] x
  [0, H] (the convention of detectron2's Pascal VOC loader and of torchvision's models).
- All objects are returned, difficult ones included with their flag; training code decides
  whether to drop them, the evaluator ignores them (docs/protocols.md section 3).
- `targets`/`voc_labels` of `voc07_cls` hold the (N, 20) int8 label matrix; the class order is
  the standard VOC order below.
"""
from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from common.data.decode import (DEFAULT_LOAD_SIZE, check_load_size, check_split, load_rgb,
                                load_square, require_root)
from common.errors import ConfigError

VOC_CLASSES = (
    "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair", "cow",
    "diningtable", "dog", "horse", "motorbike", "person", "pottedplant", "sheep", "sofa", "train",
    "tvmonitor",
)
VOC_SPLITS = ("train", "val", "trainval", "test")


def find_voc_year_folder(root: str | Path | None, year: str, dataset: str) -> Path:
    """Locate `VOC<year>` given its parent's parent, its parent, or itself."""
    expected = (f"the folder containing VOCdevkit/VOC{year}, VOCdevkit/VOC{year} itself, or a data "
                f"root holding voc{year}/VOCdevkit/VOC{year}")
    path = require_root(root, dataset, expected)
    for candidate in (path / "VOCdevkit" / f"VOC{year}", path / f"VOC{year}", path,
                      path / f"voc{year}" / "VOCdevkit" / f"VOC{year}"):
        if (candidate / "ImageSets" / "Main").is_dir():
            return candidate
    raise ConfigError(f"{dataset} root {path}: no ImageSets/Main found (expected {expected})")


def read_split_ids(voc_dir: Path, split: str, dataset: str) -> list[str]:
    split_file = voc_dir / "ImageSets" / "Main" / f"{split}.txt"
    if not split_file.is_file():
        raise ConfigError(f"{dataset} split file {split_file}: missing (expected one id a line)")
    return [line.strip() for line in split_file.read_text().splitlines() if line.strip()]


def read_class_labels(voc_dir: Path, split: str, ids: list[str]) -> np.ndarray:
    """(N, 20) int8 labels in {1, 0, -1} from the per-class files `<class>_<split>.txt`."""
    row = {image_id: i for i, image_id in enumerate(ids)}
    labels = np.zeros((len(ids), len(VOC_CLASSES)), dtype=np.int8)
    for c, class_name in enumerate(VOC_CLASSES):
        path = voc_dir / "ImageSets" / "Main" / f"{class_name}_{split}.txt"
        if not path.is_file():
            raise ConfigError(f"voc07_cls class file {path}: missing "
                              "(expected '<id> <1|0|-1>' lines)")
        seen = np.zeros(len(ids), dtype=bool)
        for line in path.read_text().splitlines():
            fields = line.split()
            if not fields:
                continue
            if len(fields) != 2 or fields[1] not in ("1", "0", "-1"):
                raise ConfigError(f"voc07_cls class file {path}: bad line {line!r} "
                                  "(expected '<id> <1|0|-1>')")
            if fields[0] in row:
                labels[row[fields[0]], c] = int(fields[1])
                seen[row[fields[0]]] = True
        if not seen.all():
            missing = ids[int(np.flatnonzero(~seen)[0])]
            raise ConfigError(f"voc07_cls class file {path}: no line for id {missing} "
                              f"of {split}.txt")
    return labels


def parse_annotation(xml_path: Path) -> dict:
    """Boxes (0-based continuous x1y1x2y2), labels 1..20, difficult flags and (H, W) of one XML."""
    if not xml_path.is_file():
        raise ConfigError(f"voc_det annotation {xml_path}: missing")
    try:
        tree = ET.parse(xml_path).getroot()
        size = tree.find("size")
        height, width = int(size.findtext("height")), int(size.findtext("width"))
        corners = ("xmin", "ymin", "xmax", "ymax")
        objects = [(obj.findtext("name").strip(),
                    [float(obj.find("bndbox").findtext(k)) for k in corners],
                    int(obj.findtext("difficult") or 0) == 1)
                   for obj in tree.iter("object")]
    except (ET.ParseError, AttributeError, TypeError, ValueError) as err:
        raise ConfigError(f"voc_det annotation {xml_path}: not a VOC annotation ({err})") from err
    unknown = [name for name, _, _ in objects if name not in VOC_CLASSES]
    if unknown:
        raise ConfigError(f"voc_det annotation {xml_path}: unknown class {unknown[0]!r}")
    boxes = [[x1 - 1.0, y1 - 1.0, x2, y2] for _, (x1, y1, x2, y2), _ in objects]
    labels = [VOC_CLASSES.index(name) + 1 for name, _, _ in objects]
    difficult = [flag for _, _, flag in objects]
    return {
        "boxes": torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4),
        "labels": torch.tensor(labels, dtype=torch.int64),
        "difficult": torch.tensor(difficult, dtype=torch.bool),
        "size": torch.tensor([height, width], dtype=torch.int64),
    }


class _VOCBase(Dataset):
    name: str

    def __init__(self, root, split: str, year: str):
        self.split = check_split(split, VOC_SPLITS, self.name)
        self.root = find_voc_year_folder(root, str(year), self.name)
        self.ids = read_split_ids(self.root, split, self.name)
        self.classes = list(VOC_CLASSES)
        self.num_classes = len(VOC_CLASSES)

    def _image_path(self, image_id: str) -> Path:
        path = self.root / "JPEGImages" / f"{image_id}.jpg"
        if not path.is_file():
            raise ConfigError(f"{self.name} image {path}: missing (listed in {self.split}.txt)")
        return path

    def __len__(self) -> int:
        return len(self.ids)


class VOCClassification(_VOCBase):
    """VOC multi-label classification with the official {1, 0, -1} image-level labels."""

    name = "voc07_cls"

    def __init__(self, root, split: str = "trainval", load_size: int = DEFAULT_LOAD_SIZE,
                 year: str = "2007"):
        self.load_size = check_load_size(load_size, self.name)
        super().__init__(root, split, year)
        self.voc_labels = read_class_labels(self.root, split, self.ids)
        self.targets = self.voc_labels

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        image = load_square(self._image_path(self.ids[index]), self.load_size)
        return image, torch.from_numpy(self.voc_labels[index].astype(np.float32))


class VOCDetection(_VOCBase):
    """VOC boxes per image from the Annotations XML; images at their original size."""

    name = "voc_det"

    def __init__(self, root, split: str = "trainval", year: str = "2007"):
        super().__init__(root, split, year)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, dict]:
        image_id = self.ids[index]
        target = parse_annotation(self.root / "Annotations" / f"{image_id}.xml")
        target["image_id"] = image_id
        return load_rgb(self._image_path(image_id)), target
