"""Image-folder classification data: `root/<split>/<class>/<image>` (ImageNet, ImageNet-100,
CUB-200-2011, Birdsnap, Places205 once arranged that way).

Items are `(uint8 tensor (3, load_size, load_size), int label)`: decoded with PIL, shorter side
resized to `load_size` (default 256), centre square cropped (see `common.data.decode`): the
evaluations' picture. For SSL pretraining, `crops` says where the random crops come from: "full"
(default) draws them from the whole decoded file in the loader workers, as the reference pipelines
do (`common.data.crops`); "square" draws them on the device from the 256 px centre square (faster
to decode, but it never shows the image's sides). `decode` says where full-image crops are decoded
and cut: `auto` (default) on the training device when it is a GPU (`common.data.device_crops`), in
the loader workers otherwise; `gpu` or `cpu` force one (`gpu` on a CPU device runs the device
path's code on the CPU, which is how the tests check it).

Choices where the papers are silent:
- classes are the sorted sub-folder names of `root/<split>` (so label ids agree between splits
  that hold the same class folders); files are sorted by path within a class;
- accepted extensions are torchvision's image extensions plus `.gif` (the ants/bees set ships a
  GIF that PIL decodes), compared case-insensitively; other files are ignored;
- any split name is accepted as long as `root/<split>` exists (train, val, test, ...).
"""
from __future__ import annotations

from pathlib import Path

import torch
from torch.utils.data import Dataset

from common.data.decode import DEFAULT_LOAD_SIZE, check_load_size, load_square, require_root
from common.errors import ConfigError

# where SSL crops come from: full, the whole decoded file (common/data/crops.py); square, the stored
# centre square (the labelled older option)
CROP_MODES = ("full", "square")
# where full-image crops are decoded and cut: auto (gpu where the run's device is CUDA, else cpu);
# gpu, on the training device (common/data/device_crops.py); cpu, in the loader workers with PIL
DECODE_MODES = ("auto", "gpu", "cpu")
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp",
                    ".gif")


class ImageFolder(Dataset):
    """A folder-per-class image data set, decoded to fixed-size uint8 squares."""

    name = "imagefolder"

    def __init__(self, root: str | Path | None, split: str = "train",
                 load_size: int = DEFAULT_LOAD_SIZE, crops: str = "full", decode: str = "auto"):
        self.load_size = check_load_size(load_size, self.name)
        if crops not in CROP_MODES:
            raise ConfigError(f"{self.name} crops={crops!r}: expected full (SSL crops from the whole image) or square")
        if decode not in DECODE_MODES:
            raise ConfigError(f"{self.name} decode={decode!r}: expected one of {', '.join(DECODE_MODES)}")
        self.crops, self.decode = crops, decode
        base = require_root(root, self.name, "a folder with <split>/<class>/<image> inside")
        split_dir = base / split
        if not split_dir.is_dir():
            raise ConfigError(f"{self.name} split {split!r}: no folder {split_dir} "
                              f"(expected {base}/<split>/<class>/<image>)")
        self.classes = sorted(d.name for d in split_dir.iterdir() if d.is_dir())
        self.samples: list[tuple[Path, int]] = []
        for label, class_name in enumerate(self.classes):
            files = sorted(p for p in (split_dir / class_name).rglob("*")
                           if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS)
            self.samples.extend((p, label) for p in files)
        if not self.samples:
            raise ConfigError(f"{self.name} split folder {split_dir}: no images found (expected "
                              f"<class>/<image> with one of {', '.join(IMAGE_EXTENSIONS)})")
        self.targets = [label for _, label in self.samples]
        self.num_classes = len(self.classes)
        self.root = base
        self.split = split

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        path, label = self.samples[index]
        return load_square(path, self.load_size), label
