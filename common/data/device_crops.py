"""Full-image SSL crops decoded and cut on the training device (`decode: gpu`, the image-folder
default where CUDA is present).

The CPU path (common/data/crops.py) decodes every file and cuts its crops in the loader workers,
about 3 ms per image of SimCLR's two 224 px crops: a GPU step of ResNet-18 needs far more workers
than a machine has cores. Here the workers only read each file's bytes and draw its crop boxes
with the same seeded sampler, in the same order (the crop law stays the papers':
RandomResizedCrop's scale and ratio on the whole image); the training process hands the batch to
the device, which decodes it in one call (`torchvision.io.decode_jpeg` on a list: nvJPEG, batched)
and cuts and resizes each image's boxes in one `torchvision.ops.roi_align` (bilinear samples
averaged over each output pixel's bin, an adaptive number of them per bin: the averaging stands in
for PIL's antialiased shrink). The batch is uint8 (B, K, 3, S, S) `ViewCrops` as on the CPU path, and
the view pipelines finish it on the device.

The batch type is `EncodedBatch`: the engine's `images.to(device)` is where the decoding happens,
so the training loop is the same for both paths. Files that are not plain JPEGs (PNG, CMYK
JPEGs, ...) are decoded in the worker with PIL and travel as pixels.

Tolerance against the CPU path for the same boxes (tests/test_crops.py, 50 VOC2007 photos, a box
of 80 % of each side, 224 px): mean absolute difference about 1 of 255; the difference is
interpolation (bilinear bins against PIL's filter), not geometry. A slot whose pipeline asks for
bicubic resizing gets the same bilinear bins here.
"""
from __future__ import annotations

from pathlib import Path

import torch
from PIL import Image

from common.data.decode import to_uint8_chw
from common.views.pipeline import ViewCrops

BOX_FIELDS = 5  # left, top, width, height, flip


def read_item(path: Path, slots, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """One file -> (its JPEG bytes, or its pixels if the device cannot decode it; its boxes, float
    (K, 5)). The boxes are drawn as the CPU path draws them: on the file's own size, slot by slot,
    from the same generator."""
    with Image.open(path) as img:
        width, height = img.size
        boxes = [slot.box(height, width, generator) for slot in slots]
        pixels = None if img.format == "JPEG" and img.mode in ("RGB", "L") else to_uint8_chw(img.convert("RGB"))
    payload = pixels if pixels is not None else torch.frombuffer(bytearray(path.read_bytes()), dtype=torch.uint8)
    table = torch.tensor([[b.left, b.top, b.width, b.height, float(b.flip)] for b in boxes], dtype=torch.float32)
    return payload, table


def cut(images: list[torch.Tensor], boxes: torch.Tensor, size: int) -> torch.Tensor:
    """uint8 (3, H_i, W_i) images and their boxes (B, K, 5) -> uint8 (B, K, 3, size, size)."""
    from torchvision.ops import roi_align

    out = []
    for img, b in zip(images, boxes):
        rois = torch.cat([torch.zeros_like(b[:, :1]), b[:, 0:1], b[:, 1:2], b[:, 0:1] + b[:, 2:3],
                          b[:, 1:2] + b[:, 3:4]], dim=1)
        crops = roi_align(img[None].float(), rois, output_size=size, spatial_scale=1.0, sampling_ratio=-1,
                          aligned=True)
        flip = (b[:, 4] > 0.5).view(-1, 1, 1, 1)
        out.append(torch.where(flip, crops.flip(-1), crops))
    return torch.stack(out).round_().clamp_(0, 255).to(torch.uint8)


class EncodedBatch:
    """A batch as the workers hand it over: payloads (bytes or pixels) and boxes (B, K, 5).
    `.to(device)` decodes and cuts it there (the result is the views' crops, `ViewCrops` at stage
    "geometry", no longer a batch of this kind)."""

    def __init__(self, payloads: list[torch.Tensor], boxes: torch.Tensor, size: int):
        self.payloads, self.boxes, self.size = payloads, boxes, size

    def __len__(self) -> int:
        return len(self.payloads)

    def pin_memory(self) -> "EncodedBatch":
        return EncodedBatch([p.pin_memory() for p in self.payloads], self.boxes.pin_memory(), self.size)

    def to(self, device: torch.device | str, non_blocking: bool = False) -> ViewCrops:
        from torchvision.io import ImageReadMode, decode_jpeg

        device = torch.device(device)
        jpegs = [i for i, p in enumerate(self.payloads) if p.dim() == 1]
        decoded = decode_jpeg([self.payloads[i] for i in jpegs], mode=ImageReadMode.RGB, device=device) if jpegs else []
        images = [p.to(device, non_blocking=non_blocking) if p.dim() == 3 else None for p in self.payloads]
        for i, img in zip(jpegs, decoded):
            images[i] = img
        return ViewCrops(cut(images, self.boxes.to(device, non_blocking=non_blocking), self.size), "geometry")
