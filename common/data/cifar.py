"""CIFAR-10 and CIFAR-100 from the python-pickle release (Krizhevsky 2009), without torchvision.

Layout: `root/cifar-10-batches-py/{data_batch_1..5, test_batch, batches.meta}` and
`root/cifar-100-python/{train, test, meta}`; `root` may also be that inner folder itself, or a data
root laid out like `../shared/data` (`root/cifar10/cifar-10-batches-py`, `root/cifar100/...`).
Items are `(uint8 tensor (3, 32, 32), int label)` at the native 32x32 size.

Choices where the papers are silent:
- A folder with fewer images than the official release (50,000 train / 10,000 test) is loaded,
  with one `PartialDatasetWarning` saying how many were found; the partial copies in
  `../shared/data` are such folders (their CIFAR-10 batches also lack the `filenames` key, which
  this loader never reads).
- The md5 sums of the official files are not checked (the partial copies would fail them).
- The pickles are read with an unpickler that only admits the numpy names those files use
  (ndarray, dtype, _reconstruct), so a crafted file cannot run code.
- CIFAR-100 uses the 100 fine labels by default; `label_type="coarse"` gives the 20 superclasses.
"""
from __future__ import annotations

import pickle
import warnings
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from common.data.decode import check_split, require_root
from common.errors import ConfigError


class PartialDatasetWarning(UserWarning):
    """A data set folder holds fewer images than the official release."""


def _numpy_reconstruct():
    try:  # numpy >= 2 moved the pickling helpers to numpy._core
        from numpy._core.multiarray import _reconstruct
    except ImportError:  # pragma: no cover - numpy 1.x
        from numpy.core.multiarray import _reconstruct
    return _reconstruct


class _CifarUnpickler(pickle.Unpickler):
    """Admit only the numpy globals a CIFAR pickle refers to."""

    _ALLOWED = {
        ("numpy", "ndarray"): np.ndarray,
        ("numpy", "dtype"): np.dtype,
        ("numpy.core.multiarray", "_reconstruct"): _numpy_reconstruct(),
        ("numpy._core.multiarray", "_reconstruct"): _numpy_reconstruct(),
    }

    def find_class(self, module, name):
        if (module, name) not in self._ALLOWED:
            raise pickle.UnpicklingError(f"global {module}.{name} is not allowed in a CIFAR file")
        return self._ALLOWED[(module, name)]


def _load_pickle(path: Path) -> dict:
    if not path.is_file():
        raise ConfigError(f"CIFAR file {path}: missing (expected the python-pickle release layout)")
    try:
        with open(path, "rb") as f:
            content = _CifarUnpickler(f, encoding="latin1").load()
    except (pickle.UnpicklingError, EOFError, ValueError) as err:
        raise ConfigError(f"CIFAR file {path}: not a readable CIFAR pickle ({err})") from err
    if not isinstance(content, dict):
        raise ConfigError(f"CIFAR file {path}: expected a pickled dict")
    return content


def _field(content: dict, key: str, path: Path):
    if key not in content:
        raise ConfigError(f"CIFAR file {path}: no {key!r} entry")
    return content[key]


class _CifarBase(Dataset):
    """Shared loading: subclasses name the folder, the files per split and the label keys."""

    name: str
    folder: str
    files: dict[str, tuple[str, ...]]
    meta_file: str
    official_sizes = {"train": 50_000, "test": 10_000}

    def __init__(self, root: str | Path | None, split: str = "train"):
        self.split = check_split(split, tuple(self.files), self.name)
        base = self._find_folder(root)
        images, labels = [], []
        for file_name in self.files[split]:
            path = base / file_name
            batch = _load_pickle(path)
            data = np.asarray(_field(batch, "data", path), dtype=np.uint8)
            batch_labels = _field(batch, self.label_key, path)
            if data.ndim != 2 or data.shape[1] != 3 * 32 * 32 or len(batch_labels) != len(data):
                raise ConfigError(f"CIFAR file {path}: expected data (n, 3072) "
                                  f"with n labels, got {data.shape} and {len(batch_labels)}")
            images.append(data.reshape(-1, 3, 32, 32))
            labels.extend(int(v) for v in batch_labels)
        self.images = torch.from_numpy(np.concatenate(images))
        self.targets = labels
        meta_path = base / self.meta_file
        self.classes = list(_field(_load_pickle(meta_path), self.names_key, meta_path))
        self.num_classes = len(self.classes)
        self.root = base
        expected = self.official_sizes[split]
        if len(labels) < expected:
            warnings.warn(f"{self.name} {split} at {base}: found {len(labels)} images, expected "
                          f"{expected} (a partial copy; loading it anyway)", PartialDatasetWarning,
                          stacklevel=3)

    def _find_folder(self, root) -> Path:
        expected = (f"the folder containing {self.folder}/, that folder itself, or a data root "
                    f"holding {self.name}/{self.folder}/")
        path = require_root(root, self.name, expected)
        # the data root of ../shared/data (one folder per data set) is accepted too
        for candidate in (path / self.folder, path / self.name / self.folder):
            if candidate.is_dir():
                return candidate
        if (path / self.meta_file).is_file():
            return path
        raise ConfigError(f"{self.name} root {path}: no {self.folder}/ and no {self.meta_file} "
                          f"(expected {expected})")

    def __len__(self) -> int:
        return len(self.targets)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        # clone: callers may modify the image in place without touching the data set
        return self.images[index].clone(), self.targets[index]


class CIFAR10(_CifarBase):
    name = "cifar10"
    folder = "cifar-10-batches-py"
    files = {"train": tuple(f"data_batch_{i}" for i in range(1, 6)), "test": ("test_batch",)}
    meta_file = "batches.meta"
    label_key = "labels"
    names_key = "label_names"


class CIFAR100(_CifarBase):
    name = "cifar100"
    folder = "cifar-100-python"
    files = {"train": ("train",), "test": ("test",)}
    meta_file = "meta"

    def __init__(self, root: str | Path | None, split: str = "train", label_type: str = "fine"):
        if label_type not in ("fine", "coarse"):
            raise ConfigError(f"cifar100 label_type={label_type!r}: expected 'fine' or 'coarse'")
        self.label_key = f"{label_type}_labels"
        self.names_key = f"{label_type}_label_names"
        super().__init__(root, split)
