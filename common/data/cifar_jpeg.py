"""The whole of CIFAR-10 as JPEGs (`cifar10_jpeg`): 50,000 train / 10,000 test images, 32x32.

Source layout: one uncompressed zip, `cifar10-jpeg.zip`, with members `train/<class>/NNNN.jpg`
(5,000 per class) and `test/<class>/NNNN.jpg` (1,000 per class). `root` may be the zip itself,
the folder holding it, or a data root holding `cifar10_jpeg/cifar10-jpeg.zip` (as ../shared/data).
The label of a class folder is its position in CIFAR-10's own order (airplane 0 ... truck 9, the
order of the official `batches.meta`); NNNN is the image's rank within its class in the official
batches, so the items come class by class in that order.

Items are `(uint8 tensor (3, 32, 32), int label)`, the same as `cifar10`. The pixels are JPEG
decodes (about 30 dB from the original pixels): numbers on this copy are "CIFAR-10 (JPEG)" numbers.

Decoding 60,000 files takes a while, so the first load of a zip decodes both splits once into a
cache outside git, `<cache>/cifar10_jpeg/<md5 of the zip>/{train,test}.npz`, where `<cache>` is
`$LOWPREC_SSL_CACHE`, else `$XDG_CACHE_HOME/lowprec-ssl`, else `~/.cache/lowprec-ssl`. A second
load reads the arrays (about a second, most of it the md5). A missing, truncated or foreign zip
(one whose members are not this layout, or whose counts differ) is one ConfigError line, and
nothing is written to the cache unless the whole split decoded.
"""
from __future__ import annotations

import hashlib
import io
import os
import re
import zipfile
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset

from common.checkpoint import atomic_write
from common.data.decode import check_split, require_root
from common.errors import ConfigError

CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")
PER_CLASS = {"train": 5_000, "test": 1_000}
ZIP_NAME = "cifar10-jpeg.zip"
FOLDER = "cifar10_jpeg"
_MEMBER = re.compile(r"^(train|test)/([a-z]+)/(\d+)\.jpg$")


def cache_root() -> Path:
    """Where decoded data sets are kept (outside git): see the module docstring."""
    if os.environ.get("LOWPREC_SSL_CACHE"):
        return Path(os.environ["LOWPREC_SSL_CACHE"]).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base).expanduser() / "lowprec-ssl"


def find_zip(root) -> Path:
    expected = f"{ZIP_NAME}, the folder holding it, or a data root holding {FOLDER}/{ZIP_NAME}"
    if root is not None and Path(root).expanduser().is_file():
        return Path(root).expanduser()
    path = require_root(root, FOLDER, expected)
    for candidate in (path / ZIP_NAME, path / FOLDER / ZIP_NAME):
        if candidate.is_file():
            return candidate
    raise ConfigError(f"{FOLDER} root {path}: no {ZIP_NAME} (expected {expected})")


def file_md5(path: Path) -> str:
    digest = hashlib.md5()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 22), b""):
            digest.update(block)
    return digest.hexdigest()


def _members(archive: zipfile.ZipFile, split: str, path: Path) -> list[tuple[int, int, str]]:
    """(label, rank in class, member name) of every image of `split`, checked against the layout."""
    found = []
    for name in archive.namelist():
        match = _MEMBER.match(name)
        if match is None or match.group(1) != split:
            continue
        if match.group(2) not in CLASSES:
            raise ConfigError(f"{FOLDER} zip {path}: member {name}: {match.group(2)!r} is not a "
                              f"CIFAR-10 class")
        found.append((CLASSES.index(match.group(2)), int(match.group(3)), name))
    counts = np.bincount([label for label, _, _ in found], minlength=len(CLASSES))
    if not (counts == PER_CLASS[split]).all():
        raise ConfigError(f"{FOLDER} zip {path}: {split}/ holds {counts.tolist()} images per class, "
                          f"expected {PER_CLASS[split]} each (not the CIFAR-10 JPEG layout)")
    return sorted(found)


def _decode_split(path: Path, split: str) -> tuple[np.ndarray, np.ndarray]:
    try:
        with zipfile.ZipFile(path) as archive:
            members = _members(archive, split, path)
            images = np.empty((len(members), 3, 32, 32), dtype=np.uint8)
            for i, (_, _, name) in enumerate(members):
                with Image.open(io.BytesIO(archive.read(name))) as img:
                    pixels = np.asarray(img.convert("RGB"), dtype=np.uint8)
                if pixels.shape != (32, 32, 3):
                    raise ConfigError(f"{FOLDER} zip {path}: {name} is {pixels.shape[1]}x"
                                      f"{pixels.shape[0]}, expected 32x32")
                images[i] = pixels.transpose(2, 0, 1)
    except (zipfile.BadZipFile, OSError, EOFError) as err:
        raise ConfigError(f"{FOLDER} zip {path}: not a readable zip ({err})") from err
    labels = np.array([label for label, _, _ in members], dtype=np.int64)
    return images, labels


def load_split(root, split: str) -> tuple[np.ndarray, np.ndarray, Path]:
    """(images (N, 3, 32, 32) uint8, labels (N,) int64, zip path), through the cache."""
    path = find_zip(root)
    cached = cache_root() / FOLDER / file_md5(path) / f"{split}.npz"
    if cached.is_file():
        try:
            with np.load(cached) as stored:
                return stored["images"], stored["labels"], path
        except (OSError, ValueError, KeyError, zipfile.BadZipFile):
            pass  # an unreadable cache entry is decoded again and replaced
    images, labels = _decode_split(path, split)
    def write(tmp: Path) -> None:
        with open(tmp, "wb") as f:
            np.savez(f, images=images, labels=labels)
    atomic_write(cached, write)
    return images, labels, path


class CIFAR10JPEG(Dataset):
    name = FOLDER
    official_sizes = {split: n * len(CLASSES) for split, n in PER_CLASS.items()}

    def __init__(self, root, split: str = "train"):
        self.split = check_split(split, tuple(PER_CLASS), self.name)
        images, labels, self.root = load_split(root, split)
        self.images = torch.from_numpy(images)
        self.targets = labels.tolist()
        self.classes = list(CLASSES)
        self.num_classes = len(CLASSES)

    def __len__(self) -> int:
        return len(self.targets)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        return self.images[index].clone(), self.targets[index]
