"""Label-fraction subsets for semi-supervised fine-tuning (BURN appendix A; CQ section 4:
10% / 1% labels).

docs/protocols.md section 3: on ImageNet the 1% / 10% subsets are SimCLR's fixed file lists (12,811 and
128,116 images), never resampled; for other data sets make seeded, class-balanced lists once,
keep them and reuse them. `label_fraction_indices` does both:

- `list_file` given: one image path per line (e.g. `n01440764_10026.JPEG`, or with folders); each
  line is matched by its file name against the `samples` of an image-folder data set. A name
  that is not in the data set raises ConfigError. `fraction` and `seed` are then not used.
- otherwise a class-balanced list: k = max(1, round(fraction * N / C)) images per class, with N
  the data set size and C the number of classes present in `targets` (Python's round, halves to
  even); a class with fewer than k images gives all of its images. Each class's images are drawn
  without replacement from one numpy Generator seeded with `seed`, classes in ascending order.
  With `cache_dir`, the list is written once, atomically, to
  `<cache_dir>/<name>_<split>_frac<fraction>_seed<seed>_n<size>.json` and read back (not
  regenerated) on later calls, so a committed list is what every later run uses.

Indices are returned sorted ascending, as a list of ints.
"""
from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

import numpy as np
from torch.utils.data import Dataset

from common.errors import ConfigError


def label_fraction_indices(dataset: Dataset, fraction: float | None, seed: int,
                           cache_dir: str | Path | None = None,
                           list_file: str | Path | None = None) -> list[int]:
    """Indices of the labelled subset of `dataset` (see the module docstring)."""
    if list_file is not None:
        return indices_from_list_file(dataset, list_file)
    if fraction is None or not 0.0 < float(fraction) <= 1.0:
        raise ConfigError(f"label fraction {fraction!r}: expected a number in (0, 1]")
    if cache_dir is None:
        return balanced_indices(_int_targets(dataset), float(fraction), seed)
    path = Path(cache_dir) / cache_file_name(dataset, float(fraction), seed)
    if path.is_file():
        return _read_cached(path, len(dataset))
    indices = balanced_indices(_int_targets(dataset), float(fraction), seed)
    _write_atomic(path, {
        "dataset": _dataset_name(dataset), "split": getattr(dataset, "split", "unknown"),
        "fraction": float(fraction), "seed": seed, "size": len(dataset), "indices": indices,
    })
    return indices


def per_class_count(num_images: int, num_classes: int, fraction: float) -> int:
    """Images per class: round(fraction * N / C), at least 1."""
    return max(1, round(fraction * num_images / num_classes))


def balanced_indices(targets, fraction: float, seed: int) -> list[int]:
    """A seeded, class-balanced subset of `targets` (1-D int labels), sorted."""
    targets = np.asarray(targets)
    classes = np.unique(targets)
    k = per_class_count(len(targets), len(classes), fraction)
    rng = np.random.default_rng(seed)
    chosen = [rng.permutation(np.flatnonzero(targets == c))[:k] for c in classes]
    return sorted(int(i) for i in np.concatenate(chosen))


def cache_file_name(dataset: Dataset, fraction: float, seed: int) -> str:
    split = getattr(dataset, "split", "unknown")
    return f"{_dataset_name(dataset)}_{split}_frac{fraction:g}_seed{seed}_n{len(dataset)}.json"


def indices_from_list_file(dataset: Dataset, list_file: str | Path) -> list[int]:
    """Indices of the images named in `list_file` (matched by file name), sorted."""
    path = Path(list_file)
    if not path.is_file():
        raise ConfigError(f"label list file {path}: missing (expected one image path a line)")
    samples = getattr(dataset, "samples", None)
    if samples is None:
        raise ConfigError(f"label list file {path}: the data set {_dataset_name(dataset)} has no "
                          "image files to match (expected an imagefolder data set)")
    by_name = {Path(p).name: i for i, (p, _) in enumerate(samples)}
    names = [Path(line.strip()).name for line in path.read_text().splitlines() if line.strip()]
    missing = [n for n in names if n not in by_name]
    if missing:
        raise ConfigError(f"label list file {path}: {len(missing)} of {len(names)} images not in "
                          f"the data set (first: {missing[0]})")
    return sorted({by_name[n] for n in names})


def _int_targets(dataset: Dataset) -> np.ndarray:
    targets = np.asarray(getattr(dataset, "targets", None))
    if targets.ndim != 1 or targets.dtype.kind not in "iu":
        raise ConfigError(f"label fraction: data set {_dataset_name(dataset)} needs 1-D int "
                          "`targets` (a single-label classification data set)")
    return targets


def _dataset_name(dataset: Dataset) -> str:
    return getattr(dataset, "name", type(dataset).__name__)


def _read_cached(path: Path, size: int) -> list[int]:
    try:
        indices = json.loads(path.read_text())["indices"]
    except (json.JSONDecodeError, KeyError, TypeError) as err:
        raise ConfigError(f"label fraction cache {path}: unreadable ({err})") from err
    if not all(isinstance(i, int) and 0 <= i < size for i in indices):
        raise ConfigError(f"label fraction cache {path}: expected int indices in [0, {size})")
    return indices


def _write_atomic(path: Path, content: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
    with os.fdopen(fd, "w") as f:
        json.dump(content, f)
    os.replace(tmp, path)
