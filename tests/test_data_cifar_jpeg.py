"""`cifar10_jpeg`: the whole of CIFAR-10 from ../shared/data's JPEG zip, decoded once into a cache."""
import os
import subprocess
import sys
import zipfile

import numpy as np
import pytest

from common.data import build_dataset
from common.data import cifar_jpeg
from common.errors import ConfigError


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    """A private cache for this module: the first load decodes, the others read it."""
    path = tmp_path_factory.mktemp("cache")
    old = os.environ.get("LOWPREC_SSL_CACHE")
    os.environ["LOWPREC_SSL_CACHE"] = str(path)
    yield path
    if old is None:
        del os.environ["LOWPREC_SSL_CACHE"]
    else:
        os.environ["LOWPREC_SSL_CACHE"] = old


def test_whole_cifar10_counts_classes_and_items(shared_data, cache):
    train = build_dataset("cifar10_jpeg", shared_data, "train")
    test = build_dataset("cifar10_jpeg", shared_data, "test")
    assert (len(train), len(test)) == (50_000, 10_000)
    assert train.classes == ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse",
                             "ship", "truck"] and train.num_classes == 10
    assert np.bincount(train.targets).tolist() == [5_000] * 10
    assert np.bincount(test.targets).tolist() == [1_000] * 10
    image, label = test[0]
    assert str(image.dtype) == "torch.uint8" and tuple(image.shape) == (3, 32, 32) and label == 0
    image[:] = 0  # items are copies
    assert test.images[0].any()
    # the cache holds one folder per zip md5, both splits
    assert sorted(p.name for p in (cache / "cifar10_jpeg").glob("*/*.npz")) == ["test.npz", "train.npz"]


def test_the_jpegs_are_the_partial_pickles_images(shared_data, cache):
    """The partial pickle's test images are the first of the official test batch: the JPEG of the
    same class and rank within the class is the same picture (about 30 dB), a neighbour is not."""
    exact = build_dataset("cifar10", shared_data, "test")
    jpeg = build_dataset("cifar10_jpeg", shared_data, "test")
    labels = np.array(exact.targets)
    ranks = np.array([np.sum(labels[:i] == t) for i, t in enumerate(labels)])
    index = labels * 1000 + ranks

    def psnr(a, b):
        mse = ((a.astype(np.float64) - b.astype(np.float64)) ** 2).mean(axis=(1, 2, 3))
        return 10 * np.log10(255.0 ** 2 / mse)

    same = psnr(exact.images.numpy(), jpeg.images.numpy()[index])
    shifted = psnr(exact.images.numpy(), jpeg.images.numpy()[index + 1])
    assert np.median(same) > 28 and same.min() > 20
    assert np.median(shifted) < 20


def test_root_may_be_the_zip_its_folder_or_the_data_root(shared_data, cache):
    forms = [shared_data, shared_data / "cifar10_jpeg", shared_data / "cifar10_jpeg" / "cifar10-jpeg.zip"]
    sets = [build_dataset("cifar10_jpeg", root, "test") for root in forms]
    assert all(np.array_equal(s.images.numpy(), sets[0].images.numpy()) for s in sets)


def _one_line(error: ConfigError) -> str:
    text = str(error)
    assert "\n" not in text
    return text


def test_missing_truncated_and_foreign_zips_are_one_line(shared_data, tmp_path, cache):
    with pytest.raises(ConfigError) as err:
        build_dataset("cifar10_jpeg", tmp_path / "nowhere", "train")
    assert "no such folder" in _one_line(err.value)
    with pytest.raises(ConfigError) as err:
        build_dataset("cifar10_jpeg", tmp_path, "train")
    assert "no cifar10-jpeg.zip" in _one_line(err.value)
    source = (shared_data / "cifar10_jpeg" / "cifar10-jpeg.zip").read_bytes()
    truncated = tmp_path / "truncated" / "cifar10-jpeg.zip"
    truncated.parent.mkdir()
    truncated.write_bytes(source[: len(source) // 2])
    with pytest.raises(ConfigError) as err:
        build_dataset("cifar10_jpeg", truncated.parent, "test")
    assert "not a readable zip" in _one_line(err.value)
    foreign = tmp_path / "foreign" / "cifar10-jpeg.zip"
    foreign.parent.mkdir()
    with zipfile.ZipFile(foreign, "w") as archive:
        archive.writestr("test/cat/0000.jpg", source[:10])
        archive.writestr("README", "not CIFAR")
    with pytest.raises(ConfigError) as err:
        build_dataset("cifar10_jpeg", foreign, "test")
    assert "expected 1000 each" in _one_line(err.value)
    with pytest.raises(ConfigError) as err:
        build_dataset("cifar10_jpeg", shared_data, "val")
    assert "split 'val'" in _one_line(err.value)
    # nothing of the bad zips reached the cache
    assert len(list((cache / "cifar10_jpeg").glob("*"))) == 1


def test_an_unreadable_cache_entry_is_decoded_again(shared_data, cache):
    build_dataset("cifar10_jpeg", shared_data, "test")
    entry = next((cache / "cifar10_jpeg").glob("*/test.npz"))
    entry.write_bytes(b"garbage")
    again = build_dataset("cifar10_jpeg", shared_data, "test")
    assert len(again) == 10_000 and np.bincount(again.targets).tolist() == [1_000] * 10
    assert entry.stat().st_size > 10_000 * 3 * 32 * 32
