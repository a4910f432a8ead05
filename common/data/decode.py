"""Image decoding and root checks shared by the file-based data sets (folder, VOC).

Contract with the batch-level view pipeline: a classification item's image is a uint8 tensor
(3, H, W) of one fixed size per data set, so that a DataLoader can stack it. Files are decoded
with PIL, converted to RGB, the shorter side resized to `load_size` (bilinear, PIL's antialiased
resize) and the centre `load_size` x `load_size` square cropped out (the same arithmetic as
torchvision's Resize(load_size) + CenterCrop(load_size)). The SSL crops (RandomResizedCrop and
friends) are then drawn from that square on the device, batch by batch; this differs from the
reference pipelines, which crop from the full-size image, and is the price of cheap per-item
decoding (a 256 px square keeps most of the image at ImageNet scales; see the papers' 224 crops).

For JPEGs, `Image.draft` lets libjpeg decode at a reduced DCT scale that is still at least as
large as the resize target, so big photos are not decoded at full size only to be shrunk.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image

from common.errors import ConfigError

DEFAULT_LOAD_SIZE = 256


def check_load_size(load_size: int, dataset: str) -> int:
    """Validate the `load_size` keyword of a data set (a positive int)."""
    if isinstance(load_size, bool) or not isinstance(load_size, int) or load_size < 1:
        raise ConfigError(f"{dataset} load_size={load_size!r}: expected a positive integer")
    return load_size


def require_root(root: str | Path | None, dataset: str, expected: str) -> Path:
    """Turn `root` into an existing folder, or raise a one-line ConfigError."""
    if root is None:
        raise ConfigError(f"{dataset} root: none given (expected {expected})")
    path = Path(root).expanduser()
    if not path.is_dir():
        raise ConfigError(f"{dataset} root {path}: no such folder (expected {expected})")
    return path


def check_split(split: str, allowed: tuple[str, ...], dataset: str) -> str:
    if split not in allowed:
        raise ConfigError(f"{dataset} split {split!r}: expected one of {', '.join(allowed)}")
    return split


def to_uint8_chw(img: Image.Image) -> torch.Tensor:
    """PIL RGB image -> uint8 tensor (3, H, W)."""
    array = np.asarray(img, dtype=np.uint8)
    return torch.from_numpy(array.copy()).permute(2, 0, 1).contiguous()


def load_rgb(path: Path) -> torch.Tensor:
    """Decode a file at its original size as a uint8 tensor (3, H, W) (used for detection)."""
    with Image.open(path) as img:
        return to_uint8_chw(img.convert("RGB"))


def resized_short_side(width: int, height: int, size: int) -> tuple[int, int]:
    """(w, h) after resizing the shorter side to `size`; the longer side is truncated like
    torchvision's Resize(int)."""
    if width <= height:
        return size, int(size * height / width)
    return int(size * width / height), size


def load_square(path: Path, load_size: int) -> torch.Tensor:
    """Decode, resize the shorter side to `load_size`, centre-crop a square: uint8 (3, s, s)."""
    with Image.open(path) as img:
        new_w, new_h = resized_short_side(img.width, img.height, load_size)
        if img.format == "JPEG":
            img.draft("RGB", (new_w, new_h))  # decode at a cheaper scale, never below target
        rgb = img.convert("RGB")
    if rgb.size != (new_w, new_h):
        rgb = rgb.resize((new_w, new_h), Image.BILINEAR)
    left = int(round((new_w - load_size) / 2.0))
    top = int(round((new_h - load_size) / 2.0))
    rgb = rgb.crop((left, top, left + load_size, top + load_size))
    return to_uint8_chw(rgb)
