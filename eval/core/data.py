"""One split of a registered data set, as the evaluation suites name it.

`limit` keeps the first N images of a split, in data set order (the smoke and mini profiles use
it for speed; it is part of the feature cache key). CIFAR and synthetic data come in mixed class
order; image folders are sorted by class, so there a limit keeps only the first classes.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import yaml
from torch.utils.data import Dataset

from common.data import build_dataset
from common.errors import ConfigError


@dataclass(frozen=True)
class DataSpec:
    """One split of a registered data set: `build_dataset(name, root, split, **options)`."""

    name: str
    root: str | None
    split: str
    options: dict = field(default_factory=dict, hash=False)
    limit: int | None = None

    def with_split(self, split: str) -> "DataSpec":
        return DataSpec(self.name, self.root, split, dict(self.options), self.limit)

    def build(self) -> Dataset:
        dataset = build_dataset(self.name, self.root, self.split, **self.options)
        if self.limit is not None:
            if isinstance(self.limit, bool) or int(self.limit) < 1:
                raise ConfigError(f"--limit {self.limit!r}: expected a positive integer")
            if self.limit < len(dataset):
                dataset = FirstN(dataset, int(self.limit))
        return dataset

    def record(self) -> dict:
        """What identifies the data (cache key, metrics): the root resolved to an absolute path."""
        root = str(Path(self.root).expanduser().resolve()) if self.root is not None else None
        return {"name": self.name, "root": root, "split": self.split,
                "options": dict(sorted(self.options.items())), "limit": self.limit}


class FirstN(Dataset):
    """The first `n` items of a data set, keeping its label attributes."""

    def __init__(self, dataset: Dataset, n: int):
        self.dataset, self.n = dataset, n
        for attr in ("name", "split", "classes", "num_classes", "root"):
            if hasattr(dataset, attr):
                setattr(self, attr, getattr(dataset, attr))
        for attr in ("targets", "voc_labels", "samples"):
            if hasattr(dataset, attr):
                setattr(self, attr, getattr(dataset, attr)[:n])

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, index: int):
        if not 0 <= index < self.n:
            raise IndexError(index)
        return self.dataset[index]


def parse_options(text: str | dict | None, what: str = "--options") -> dict:
    """A YAML/JSON mapping given on the command line ('{num_images: 256}'); {} for None."""
    if text is None or isinstance(text, dict):
        return dict(text or {})
    try:
        value = yaml.safe_load(text)
    except yaml.YAMLError:
        value = None
    if value is None and text.strip() in ("", "{}"):
        return {}
    if not isinstance(value, dict):
        raise ConfigError(f"{what} {text!r}: expected a mapping such as '{{num_images: 256}}'")
    return value
