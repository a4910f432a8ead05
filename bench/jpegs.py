"""Generated image folders for the input-pipeline benchmarks (bench/data.py, bench/gpu.py).

Smooth random pictures (bilinear upsampling of 16x coarser noise) saved as JPEG quality 90:
decoding one costs what decoding a photo of the same size costs, and nothing is downloaded.
Each picture is seeded by its own (split, class, index), so a folder is the same whether one
process or many wrote it, and a folder of the right size is reused as it is.
"""
from __future__ import annotations

import zlib
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import torch


def smooth_picture(generator: torch.Generator, height: int, width: int):
    """A PIL RGB image of smooth random content."""
    from PIL import Image

    low = torch.rand(3, height // 16 + 1, width // 16 + 1, generator=generator)
    img = torch.nn.functional.interpolate(low[None], size=(height, width), mode="bilinear")[0]
    return Image.fromarray((img * 255).byte().permute(1, 2, 0).numpy())


def _write_class(folder: Path, split: str, c: int, count: int, height: int, width: int) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(count):
        path = folder / f"{i:05d}.jpg"
        if path.is_file():  # an interrupted writer left it: pictures are seeded per file
            continue
        g = torch.Generator().manual_seed(zlib.crc32(f"{split}/{c}/{i}".encode()))
        tmp = path.with_name(path.name + ".part")  # never counted as a picture until whole
        smooth_picture(g, height, width).save(tmp, format="JPEG", quality=90)
        tmp.rename(path)


def write_folder(root: Path, per_class: dict[str, int], height: int, width: int, classes: int = 10,
                 jobs: int = 1) -> Path:
    """root/<split>/c<class>/<i>.jpg, `per_class[split]` pictures per class (the same files every
    time), written by `jobs` processes (one class each). A split that already holds that many
    files is kept as it is."""
    for split, count in per_class.items():
        if sum(1 for _ in (root / split).rglob("*.jpg")) == count * classes:
            continue
        args = [(root / split / f"c{c:02d}", split, c, count, height, width) for c in range(classes)]
        if jobs <= 1:
            for a in args:
                _write_class(*a)
            continue
        with ProcessPoolExecutor(min(jobs, classes)) as pool:
            list(pool.map(_write_class, *zip(*args)))
    return root
