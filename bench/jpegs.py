"""Generated image folders for the input-pipeline benchmarks (bench/data.py, bench/gpu.py).

Smooth random pictures (bilinear upsampling of 16x coarser noise) saved as JPEG quality 90:
decoding one costs what decoding a photo of the same size costs, and nothing is downloaded.
"""
from __future__ import annotations

from pathlib import Path

import torch


def smooth_picture(generator: torch.Generator, height: int, width: int):
    """A PIL RGB image of smooth random content."""
    from PIL import Image

    low = torch.rand(3, height // 16 + 1, width // 16 + 1, generator=generator)
    img = torch.nn.functional.interpolate(low[None], size=(height, width), mode="bilinear")[0]
    return Image.fromarray((img * 255).byte().permute(1, 2, 0).numpy())


def write_folder(root: Path, per_class: dict[str, int], height: int, width: int, classes: int = 10) -> Path:
    """root/<split>/c<class>/<i>.jpg, `per_class[split]` pictures per class, seeded (same files
    every time). A split that already holds that many files is kept as it is."""
    g = torch.Generator().manual_seed(0)
    for split, count in per_class.items():
        if sum(1 for _ in (root / split).rglob("*.jpg")) == count * classes:
            continue
        for c in range(classes):
            folder = root / split / f"c{c:02d}"
            folder.mkdir(parents=True, exist_ok=True)
            for i in range(count):
                smooth_picture(g, height, width).save(folder / f"{i:05d}.jpg", quality=90)
    return root
