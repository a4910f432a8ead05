"""common.predictions: per-image top-1 predictions, encoded compactly and read back exactly."""
import math

import numpy as np
import pytest
import torch

from common import predictions
from eval.core.records import topk_accuracy


@pytest.mark.parametrize("classes", [10, 300])
def test_round_trip_and_agreement_with_the_accuracy(classes):
    g = torch.Generator().manual_seed(0)
    scores = torch.randn(500, classes, generator=g)
    targets = torch.randint(0, classes, (500,), generator=g)
    scores[:40, 0] = math.nan  # non-finite scores rank lowest, as in topk_accuracy
    record = predictions.encode(scores, targets)
    entry = record["predictions"]
    assert entry["format"] == ("base64-uint8" if classes <= 256 else "base64-uint16le") and entry["n"] == 500
    top1, labels = predictions.decode(record)
    assert np.array_equal(labels, targets.numpy())
    assert np.array_equal(top1, torch.nan_to_num(scores, nan=-math.inf).argmax(1).numpy())
    assert predictions.correct(record).mean() == pytest.approx(topk_accuracy(scores, targets)["top1"])


def test_ten_thousand_cifar_images_take_about_27_kilobytes():
    record = predictions.encode(torch.randn(10_000, 10), torch.randint(0, 10, (10_000,)))
    size = len(record["predictions"]["top1"]) + len(record["predictions"]["targets"])
    assert 26_000 < size < 28_000


def test_a_truncated_record_is_refused():
    record = predictions.encode(torch.randn(20, 10), torch.randint(0, 10, (20,)))
    record["predictions"]["n"] = 21
    with pytest.raises(ValueError, match="expected 21"):
        predictions.decode(record)


def test_correctness_packs_to_one_bit_per_image():
    bits = (np.random.default_rng(0).random(10_001) < 0.4).astype(np.uint8)
    packed = predictions.pack_correct(bits)
    assert packed["n"] == 10_001 and len(packed["bits"]) < 1_700
    assert np.array_equal(predictions.unpack_correct(packed), bits)
