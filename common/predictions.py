"""Per-image predictions: what an evaluation predicted for every test image, stored compactly.

The claims study's intervals resample test images as well as seeds (a paired bootstrap over
both), so every classification suite keeps, beside its accuracies, the top-1 class it predicted
for each test image and that image's label, in data set order:

    metrics["predictions"] = {"format": "base64-uint8" | "base64-uint16le", "n": N,
                              "top1": "<base64>", "targets": "<base64>"}

One byte per image for up to 256 classes (10,000 CIFAR test images: about 27 KB of JSON). `decode`
reads it back; `correct` gives the 0/1 vector the study bootstraps.
"""
from __future__ import annotations

import base64
import math
from typing import Mapping

import numpy as np
import torch

KEY = "predictions"
_FORMATS = {"base64-uint8": np.dtype("uint8"), "base64-uint16le": np.dtype("<u2")}


def encode(scores: torch.Tensor, targets: torch.Tensor) -> dict:
    """{"predictions": ...} of a (N, C) score matrix (highest score = the prediction; non-finite
    scores rank lowest, as in the accuracies) and the (N,) labels."""
    scores = torch.nan_to_num(scores.float(), nan=-math.inf)
    top1 = scores.argmax(dim=1).cpu().numpy()
    labels = targets.long().view(-1).cpu().numpy()
    fmt = "base64-uint8" if scores.shape[1] <= 256 else "base64-uint16le"
    dtype = _FORMATS[fmt]

    def pack(values: np.ndarray) -> str:
        return base64.b64encode(values.astype(dtype).tobytes()).decode("ascii")
    return {KEY: {"format": fmt, "n": int(len(labels)), "top1": pack(top1), "targets": pack(labels)}}


def decode(record: Mapping) -> tuple[np.ndarray, np.ndarray]:
    """(top-1 predictions, labels) as int64 arrays from a metrics record's "predictions" entry."""
    entry = record[KEY] if KEY in record else record
    dtype = _FORMATS[entry["format"]]
    arrays = [np.frombuffer(base64.b64decode(entry[k]), dtype=dtype).astype(np.int64) for k in ("top1", "targets")]
    if any(len(a) != entry["n"] for a in arrays):
        raise ValueError(f"predictions: expected {entry['n']} entries, got {[len(a) for a in arrays]}")
    return arrays[0], arrays[1]


def correct(record: Mapping) -> np.ndarray:
    """0/1 per test image: was its top-1 prediction its label."""
    top1, targets = decode(record)
    return (top1 == targets).astype(np.uint8)


def pack_correct(bits: np.ndarray) -> dict:
    """A 0/1 vector in 1 bit per image (what a study part commits): {"n", "bits": base64}."""
    bits = np.asarray(bits, dtype=np.uint8)
    return {"n": int(len(bits)), "bits": base64.b64encode(np.packbits(bits).tobytes()).decode("ascii")}


def unpack_correct(packed: Mapping) -> np.ndarray:
    raw = np.frombuffer(base64.b64decode(packed["bits"]), dtype=np.uint8)
    return np.unpackbits(raw)[: packed["n"]].astype(np.uint8)
