"""Full-image SSL crops: the reference pipelines' RandomResizedCrop, drawn from the decoded file in
the loader workers instead of from a stored centre square.

The reference SSL pipelines (SimCLR, MoCo v2, BYOL, BURN's code: torchvision's RandomResizedCrop on
the PIL image) draw every crop box from the WHOLE image. Without this module, folder data sets are
decoded to a 256 px centre square and the device-side crop draws from that square, which loses
the image's sides (a 500x375 photo keeps 75 % of its width) and changes the crop-size distribution.
With `crops: full` (the image-folder default for pretraining), the engine wraps the data set in
`FullImageCrops`: every item is decoded once and cut into one crop per view slot of the method
(`Method.view_slots()`), each with that slot's pipeline geometry, so a batch is uint8
(B, K, 3, S, S), handed over as `common.views.ViewCrops` at stage "geometry": the view pipelines
then skip their geometric first op and run the rest (colour, blur, ...) on the device
(`ViewPipeline.augment`, `slot=`).

Geometry of a slot, by the pipeline's first op:
- RandomResizedCrop: torchvision's box sampler (the same code as the device op: area fraction
  uniform in `scale`, log-uniform aspect in `ratio`, 10 trials, centre fallback) on the file's own
  width and height, the box resized to S x S with PIL (bilinear or bicubic, antialiased as PIL
  always is when it shrinks), then the horizontal flip with the op's `flip_p`;
- CenterCropResize (the deterministic "none" recipe): the shorter side resized to the op's
  `resize`, else to the data set's `load_size` (256: the picture the square mode gives), and the
  centre S x S (torchvision's rounding), made in one PIL resize of that box.
Randomness: one generator per (seed, epoch, index), so an item's crops do not depend on which
worker loads it, on the number of workers, or on a resume in the middle of an epoch (the sampler
passes the epoch with the index, `ResumableSampler(keyed=True)`).
Speed: JPEGs are decoded with `Image.draft` at the largest DCT reduction that still leaves every
box at least S pixels on each side (a crop is never made from fewer pixels than it shows).
Choices: the box is cut and resized in one PIL call (`resize(box=...)`), which samples the same
source pixels as crop-then-resize; the flip is drawn in the worker with the box.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import torch
from PIL import Image
from torch.utils.data import Dataset, Subset

from common.data import device_crops
from common.data.decode import DEFAULT_LOAD_SIZE, to_uint8_chw
from common.errors import ConfigError
from common.views import RandomResizedCrop, ViewCrops, ViewPipeline

RESAMPLE = {"bilinear": Image.BILINEAR, "bicubic": Image.BICUBIC}


@dataclass(frozen=True)
class Box:
    """A crop box in the decoded file's pixels, and whether the crop is mirrored."""
    left: float
    top: float
    width: float
    height: float
    flip: bool = False


class Slot:
    """The geometry of one view slot: its pipeline's first op, run on a whole file."""

    def __init__(self, pipeline: ViewPipeline, load_size: int):
        op = pipeline.geometry
        if op is None:
            raise ConfigError("crops: full needs every view pipeline to start with a random resized crop or a "
                              "centre crop; use crops: square for this method")
        self.op, self.size, self.load_size = op, pipeline.out_size, load_size
        self.resample = RESAMPLE[getattr(op, "interpolation", "bilinear")]

    def box(self, height: int, width: int, generator: torch.Generator) -> Box:
        if isinstance(self.op, RandomResizedCrop):
            p = {k: v.item() for k, v in self.op.sample(1, height, width, generator).items()}
            return Box(p["left"], p["top"], p["width"], p["height"], bool(p["flip"]))
        return centre_box(height, width, self.size, self.op.resize or self.load_size)


def centre_box(height: int, width: int, size: int, resize: int | None) -> Box:
    """CenterCropResize(size, resize) as a box of the original image: the centre `size` square
    (torchvision's rounding) of the image with its shorter side at `resize` (or its largest
    centre square if that is smaller than `size`), in the file's pixels."""
    short = min(height, width)
    scale = short / resize  # original pixels per resized pixel
    new_h, new_w = (resize, int(resize * width / short)) if height == short else (int(resize * height / short), resize)
    side = min(size, new_h, new_w)
    top, left = int(round((new_h - side) / 2.0)), int(round((new_w - side) / 2.0))
    return Box(left * scale, top * scale, side * scale, side * scale)


def draft_request(width: int, height: int, boxes: list[Box], size: int) -> tuple[int, int]:
    """The size to ask `Image.draft` for: the largest reduction d with every box still >= `size`
    pixels on each side once reduced (d <= 1 means decode at full size)."""
    smallest = min(min(b.width, b.height) for b in boxes)
    reduction = max(1.0, smallest / size)
    return math.ceil(width / reduction), math.ceil(height / reduction)


def decode_crops(path: Path, slots: list[Slot], generator: torch.Generator) -> torch.Tensor:
    """One file -> uint8 (K, 3, S, S): a crop per slot, boxes drawn on the file's own size."""
    size = slots[0].size
    with Image.open(path) as img:
        width, height = img.size
        boxes = [slot.box(height, width, generator) for slot in slots]
        if img.format == "JPEG":
            img.draft("RGB", draft_request(width, height, boxes, size))
        rgb = img.convert("RGB")
    fx, fy = rgb.width / width, rgb.height / height
    crops = []
    for slot, b in zip(slots, boxes):
        crop = rgb.resize((size, size), slot.resample,
                          box=(b.left * fx, b.top * fy, (b.left + b.width) * fx, (b.top + b.height) * fy))
        if b.flip:
            crop = crop.transpose(Image.FLIP_LEFT_RIGHT)
        crops.append(to_uint8_chw(crop))
    return torch.stack(crops)


VIEW_CHUNK = 4  # images per call of a view pipeline in a loader worker
VIEWS_SALT = 0x5EED_F00D  # keeps the views' generator of a batch apart from its first item's crops


def item_seed(seed: int, epoch: int, index: int) -> int:
    """A generator seed per (run seed, epoch, item): distinct for every triple in practice."""
    return ((seed * 1_000_003 + epoch) * 2_147_483_647 + index) % (2 ** 63 - 1)


class FullImageCrops(Dataset):
    """A file data set (`samples`: (path, label) pairs) as pre-cropped view slots: item
    (index, epoch) -> (uint8 (K, 3, S, S), label, index). Read it with `collate_fn=self.collate`:
    batches of `ViewCrops`: uint8 (B, K, 3, S, S) crops at stage "geometry", or with
    `finish_views` the finished views, float32 (B, K, 3, S, S) normalized, each slot's remaining
    ops run in the loader worker (CPU training: there the worker processes run beside the training step, where the training process would
    run them after it; views drawn from a generator per batch, seeded by its first item)."""

    def __init__(self, dataset: Dataset, pipelines: list[ViewPipeline], seed: int, finish_views: bool = False,
                 decode: str = "cpu"):
        files = image_files(dataset)
        if files is None:
            raise ConfigError(f"crops: full needs a data set of image files; {getattr(dataset, 'name', dataset)!r} "
                              "has none (use crops: square)")
        if not pipelines:
            raise ConfigError("crops: full needs a method with view pipelines")
        load_size = getattr(_base(dataset), "load_size", DEFAULT_LOAD_SIZE)
        self.slots = [Slot(p, load_size) for p in pipelines]
        if len({s.size for s in self.slots}) != 1:
            raise ConfigError(f"crops: full needs views of one size; this method's are {[s.size for s in self.slots]}")
        self.samples, self.seed, self.pipelines, self.finish_views = files, seed, list(pipelines), finish_views
        self.num_classes = getattr(_base(dataset), "num_classes", None)
        # gpu: the workers read bytes and draw boxes, the device decodes and cuts (device_crops.py);
        # its views are always finished where the batch lands
        self.decode = decode

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, key: tuple[int, int]) -> tuple[torch.Tensor, int, tuple[int, int]]:
        index, epoch = key
        path, label = self.samples[index]
        generator = torch.Generator().manual_seed(item_seed(self.seed, epoch, index))
        if self.decode == "gpu":
            return (*device_crops.read_item(path, self.slots, generator), label, key)
        return decode_crops(path, self.slots, generator), label, key

    def collate(self, items: list) -> tuple[ViewCrops | device_crops.EncodedBatch, torch.Tensor]:
        labels = torch.as_tensor([item[-2] for item in items])
        if self.decode == "gpu":
            return device_crops.EncodedBatch([item[0] for item in items], torch.stack([item[1] for item in items]),
                                             self.slots[0].size), labels
        crops = torch.stack([item[0] for item in items])
        if not self.finish_views or not items:
            return ViewCrops(crops, "geometry"), labels
        index, epoch = items[0][2]
        generator = torch.Generator().manual_seed(item_seed(self.seed, epoch, index) ^ VIEWS_SALT)
        # a few images at a time: each op then works on data that stays in the CPU's cache
        chunks = [ViewCrops(crops[i:i + VIEW_CHUNK], "geometry") for i in range(0, len(crops), VIEW_CHUNK)]
        views = [torch.cat([pipe(chunk, generator, slot=k) for chunk in chunks]) for k, pipe in enumerate(self.pipelines)]
        return ViewCrops(torch.stack(views, dim=1), "finished"), labels


def _base(dataset: Dataset) -> Dataset:
    return _base(dataset.dataset) if isinstance(dataset, Subset) else dataset


def image_files(dataset: Dataset) -> list | None:
    """(path, label) of every item of a file data set, or of a Subset of one; None otherwise."""
    if isinstance(dataset, Subset):
        files = image_files(dataset.dataset)
        return None if files is None else [files[i] for i in dataset.indices]
    return getattr(dataset, "samples", None)


def crop_mode(dataset: Dataset) -> str:
    """How a training data set's random crops are made: "full" (this module) for data sets that say
    so (a Subset as its data set), "square" (on the device, from the stored images) otherwise."""
    return getattr(_base(dataset), "crops", "square")


def training_source(dataset: Dataset, view_slots: list[ViewPipeline], seed: int,
                    finish_views: bool = False, device_type: str = "cpu") -> Dataset:
    """What a pretraining loop on `device_type` reads: `FullImageCrops` of a data set that asks
    for full-image crops (one slot per view pipeline the method calls), the data set itself
    otherwise."""
    if crop_mode(dataset) != "full":
        return dataset
    return FullImageCrops(dataset, view_slots, seed, finish_views, decode_mode(dataset, device_type))


def decode_mode(dataset: Dataset, device_type: str) -> str:
    """Where a folder's full-image crops are decoded: its `decode` option, `auto` resolved to gpu
    on a CUDA device and cpu elsewhere."""
    mode = getattr(_base(dataset), "decode", "auto")
    return ("gpu" if device_type == "cuda" else "cpu") if mode == "auto" else mode


def collate_fn(dataset: Dataset):
    """The DataLoader collate of a training source (None: PyTorch's default)."""
    return dataset.collate if isinstance(dataset, FullImageCrops) else None
