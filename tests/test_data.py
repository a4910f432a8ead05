"""The dataset registry (common/data): synthetic scenes, CIFAR, image folders, VOC, label fractions.

Expected values come from the shared data's PROVENANCE.md, from the raw files read here
independently (pickle, the per-class text files, the XML), or from hand computation.
"""
import hashlib
import json
import pickle
import re
import warnings
import xml.etree.ElementTree as ET

import numpy as np
import pytest
import torch
from PIL import Image
from torch.utils.data import DataLoader

from common.data import PartialDatasetWarning, VOC_CLASSES, build_dataset, list_datasets
from common.data.subsets import label_fraction_indices
from common.errors import ConfigError
from tests.seeds import seed

NAMES = ["cifar10", "cifar100", "cifar10_jpeg", "imagefolder", "synthetic", "synthetic_cls", "synthetic_det",
         "voc07_cls", "voc_det"]


def _images(dataset, n=None):
    return torch.stack([dataset[i][0] for i in range(n or len(dataset))])


def _digests(images):
    return {hashlib.md5(x.numpy().tobytes()).hexdigest() for x in images}


def _load_partial(*args, **kwargs):
    """Build a data set and return it with the PartialDatasetWarnings it raised."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        dataset = build_dataset(*args, **kwargs)
    return dataset, [w for w in caught if issubclass(w.category, PartialDatasetWarning)]


def test_registry_lists_every_name():
    assert list_datasets() == NAMES


# ----------------------------------------------------------------------------- synthetic


def test_synthetic_is_deterministic_per_seed_and_split():
    a = build_dataset("synthetic", None, "train", seed=3, num_images=300)
    b = build_dataset("synthetic", None, "train", seed=3, num_images=300)
    assert torch.equal(_images(a), _images(b)) and a.targets == b.targets
    other_seed = build_dataset("synthetic", None, "train", seed=4, num_images=300)
    assert not torch.equal(_images(a), _images(other_seed))
    assert a.targets != other_seed.targets
    # no image is shared between splits (VOC-style splits included)
    digests = [_digests(_images(build_dataset("synthetic", None, split, seed=3, num_images=300)))
               for split in ("train", "test", "trainval", "val")]
    assert sum(len(d) for d in digests) == len(set().union(*digests)) == 4 * 300


def test_synthetic_first_images_do_not_depend_on_num_images():
    small = build_dataset("synthetic", None, "test", seed=0, num_images=300)  # > one chunk
    large = build_dataset("synthetic", None, "test", seed=0, num_images=700)
    assert torch.equal(_images(small), _images(large, 300))
    assert small.targets == large.targets[:300]


def test_synthetic_item_contract_and_stacking():
    data = build_dataset("synthetic", None, "train", num_images=64, image_size=48, num_classes=7)
    image, label = data[5]
    assert image.dtype == torch.uint8 and image.shape == (3, 48, 48)
    assert isinstance(label, int) and label == data.targets[5]
    assert data.num_classes == len(data.classes) == 7
    assert set(data.targets) == set(range(7))
    images, labels = next(iter(DataLoader(data, batch_size=16)))
    assert images.shape == (16, 3, 48, 48) and images.dtype == torch.uint8
    assert labels.tolist() == data.targets[:16]
    assert int(images.float().std()) > 20  # not a blank image


@pytest.mark.learning
def test_synthetic_class_is_learnable_but_not_trivial():
    train = build_dataset("synthetic", None, "train", num_images=1000, seed=seed(0))
    test = build_dataset("synthetic", None, "test", num_images=300, seed=seed(0))
    x, xt = _images(train).flatten(1).float(), _images(test).flatten(1).float()
    nearest = torch.cdist(xt, x).argmin(1)  # 1-NN on raw pixels
    accuracy = (torch.tensor(train.targets)[nearest] == torch.tensor(test.targets)).float().mean()
    assert 0.25 < accuracy < 0.9  # chance is 0.1


def test_synthetic_detection_boxes_and_voc_labels():
    det = build_dataset("synthetic_det", None, "trainval", num_images=400)
    cls = build_dataset("synthetic_cls", None, "trainval", num_images=400)
    labels_from_boxes = np.full((400, 20), -1)
    num_difficult = 0
    for i in range(400):
        image, target = det[i]
        boxes, labels, difficult = target["boxes"], target["labels"], target["difficult"]
        assert image.shape == (3, 32, 32) and target["size"].tolist() == [32, 32]
        assert boxes.dtype == torch.float32 and labels.dtype == torch.int64
        assert difficult.dtype == torch.bool and len(boxes) == len(labels) == len(difficult)
        assert 1 <= len(boxes) <= 3
        assert (boxes[:, 0] >= 0).all() and (boxes[:, 1] >= 0).all()
        assert (boxes[:, 2] <= 32).all() and (boxes[:, 3] <= 32).all()
        assert (boxes[:, 2] > boxes[:, 0]).all() and (boxes[:, 3] > boxes[:, 1]).all()
        # the first box is the primary object: its category is the class label, never difficult
        assert labels[0] == det.targets[i] + 1 and not difficult[0]
        assert ((labels >= 1) & (labels <= 20)).all()
        num_difficult += int(difficult.sum())
        for label, hard in zip(labels.tolist(), difficult.tolist()):
            c = label - 1
            labels_from_boxes[i, c] = max(labels_from_boxes[i, c], 0 if hard else 1)
    assert num_difficult > 0
    assert np.array_equal(cls.voc_labels, labels_from_boxes)
    assert np.array_equal(det.voc_labels, labels_from_boxes)
    assert set(np.unique(cls.voc_labels)) == {-1, 0, 1}
    assert (cls.voc_labels == 1).any(0).all()  # every class present somewhere
    image, target = cls[7]
    assert target.dtype == torch.float32 and target.tolist() == labels_from_boxes[7].tolist()
    assert cls.num_classes == len(cls.classes) == 20
    assert torch.equal(image, det[7][0])  # both views render the same scenes


# ----------------------------------------------------------------------------- CIFAR


def _raw_cifar(path):
    with open(path, "rb") as f:
        return pickle.load(f, encoding="bytes")


def test_cifar10_partial_folder_loads_with_one_warning(shared_data):
    train, caught = _load_partial("cifar10", shared_data / "cifar10", "train")
    assert len(train) == 5438 and len(caught) == 1
    assert "5438" in str(caught[0].message) and "50000" in str(caught[0].message)
    # the inner folder itself is accepted too
    test, caught = _load_partial("cifar10", shared_data / "cifar10" / "cifar-10-batches-py", "test")
    assert len(test) == 1017 and len(caught) == 1 and "10000" in str(caught[0].message)
    assert test.classes[:3] == ["airplane", "automobile", "bird"] and test.num_classes == 10
    # PROVENANCE.md's per-class table (its "541 to 572" summary line is off: class 5 has 523)
    assert np.bincount(test.targets).tolist() == [105, 93, 100, 104, 92, 87, 114, 102, 110, 110]
    per_batch = [[107, 123, 109, 106, 106, 95, 121, 110, 109, 116],
                 [105, 101, 83, 99, 110, 96, 98, 118, 118, 89],
                 [104, 108, 92, 120, 103, 92, 107, 94, 105, 92],
                 [121, 135, 144, 113, 135, 144, 112, 121, 134, 126],
                 [104, 97, 96, 91, 109, 96, 102, 105, 106, 111]]
    assert np.bincount(train.targets).tolist() == np.sum(per_batch, 0).tolist()
    raw = _raw_cifar(shared_data / "cifar10" / "cifar-10-batches-py" / "test_batch")
    image, label = test[11]
    assert image.dtype == torch.uint8 and image.shape == (3, 32, 32)
    assert np.array_equal(image.numpy().reshape(-1), raw[b"data"][11])
    assert label == raw[b"labels"][11]
    raw5 = _raw_cifar(shared_data / "cifar10" / "cifar-10-batches-py" / "data_batch_5")
    assert np.array_equal(train[5438 - 1][0].numpy().reshape(-1), raw5[b"data"][-1])


def test_cifar100_fine_and_coarse(shared_data):
    train, caught = _load_partial("cifar100", shared_data / "cifar100", "train")
    assert len(train) == 1117 and len(caught) == 1 and "1117" in str(caught[0].message)
    test, _ = _load_partial("cifar100", shared_data / "cifar100", "test")
    assert len(test) == 916 and train.num_classes == 100 and train.classes[0] == "apple"
    assert sorted(set(train.targets)) == list(range(100))  # all fine classes present
    raw = _raw_cifar(shared_data / "cifar100" / "cifar-100-python" / "test")
    assert test.targets == raw[b"fine_labels"]
    assert np.array_equal(test[3][0].numpy().reshape(-1), raw[b"data"][3])
    coarse, _ = _load_partial("cifar100", shared_data / "cifar100", "test", label_type="coarse")
    assert coarse.num_classes == 20 and coarse.targets == raw[b"coarse_labels"]


# ----------------------------------------------------------------------------- image folder


def test_imagefolder_hymenoptera_stacks_at_load_size(shared_data):
    data = build_dataset("imagefolder", shared_data / "hymenoptera" / "hymenoptera_data", "train",
                         load_size=64)
    assert data.classes == ["ants", "bees"] and data.num_classes == 2
    assert np.bincount(data.targets).tolist() == [124, 121]  # the GIF is included
    images, labels = next(iter(DataLoader(data, batch_size=6, shuffle=True,
                                          generator=torch.Generator().manual_seed(0))))
    assert images.shape == (6, 3, 64, 64) and images.dtype == torch.uint8
    assert set(labels.tolist()) <= {0, 1}


def test_imagefolder_resizes_shorter_side_then_centre_crops(tmp_path):
    # 60x20 image: red | green | blue thirds; shorter side 20 -> 10 gives 30x10, the centre
    # 10x10 crop is the green third
    pixels = np.zeros((20, 60, 3), dtype=np.uint8)
    pixels[:, :20, 0] = pixels[:, 20:40, 1] = pixels[:, 40:, 2] = 255
    (tmp_path / "val" / "stripes").mkdir(parents=True)
    Image.fromarray(pixels).save(tmp_path / "val" / "stripes" / "a.png")
    image, label = build_dataset("imagefolder", tmp_path, "val", load_size=10)[0]
    assert image.shape == (3, 10, 10) and label == 0
    assert image[:, :, 2:8].permute(1, 2, 0).reshape(-1, 3).tolist() == [[0, 255, 0]] * 60


# ----------------------------------------------------------------------------- VOC


def test_voc07_cls_labels_match_per_class_files(shared_data):
    data = build_dataset("voc07_cls", shared_data / "voc2007", "trainval", load_size=64)
    assert len(data) == 500 and data.classes == list(VOC_CLASSES) and data.num_classes == 20
    assert data.voc_labels.shape == (500, 20)
    main = shared_data / "voc2007" / "VOCdevkit" / "VOC2007" / "ImageSets" / "Main"
    for c in (VOC_CLASSES.index("chair"), VOC_CLASSES.index("person"), VOC_CLASSES.index("dog")):
        lines = dict(line.split() for line in (main / f"{VOC_CLASSES[c]}_trainval.txt")
                     .read_text().splitlines())
        for i in (0, 1, 2, 499):
            assert data.voc_labels[i, c] == int(lines[data.ids[i]])
    # 000050 (first id): chair only difficult (0), bottle and person present (1)
    assert data.ids[0] == "000050"
    expected = [-1] * 20
    expected[VOC_CLASSES.index("chair")] = 0
    expected[VOC_CLASSES.index("bottle")] = expected[VOC_CLASSES.index("person")] = 1
    image, target = data[0]
    assert target.tolist() == expected and target.dtype == torch.float32
    assert image.shape == (3, 64, 64) and image.dtype == torch.uint8


def test_voc_root_forms_are_equivalent(shared_data):
    voc = shared_data / "voc2007"
    sizes = {len(build_dataset("voc07_cls", root, "test"))
             for root in (voc, voc / "VOCdevkit", voc / "VOCdevkit" / "VOC2007", shared_data)}
    assert sizes == {250}


def test_the_common_data_root_serves_every_cifar(shared_data):
    """data.root of the mini profile: one folder holding cifar10/, cifar100/, voc2007/."""
    ten, _ = _load_partial("cifar10", shared_data, "test")
    hundred, _ = _load_partial("cifar100", shared_data, "test")
    assert (len(ten), len(hundred)) == (1017, 916)
    with pytest.raises(ConfigError, match="data root holding cifar10/cifar-10-batches-py"):
        build_dataset("cifar10", shared_data / "hymenoptera", "test")


def test_voc_det_boxes_agree_with_xml(shared_data):
    data = build_dataset("voc_det", shared_data / "voc2007", "trainval")
    image, target = data[0]
    assert target["image_id"] == "000050"
    assert image.dtype == torch.uint8 and image.shape == (3, 375, 500)
    assert target["size"].tolist() == [375, 500]
    # straight from Annotations/000050.xml: 1-based corners -> (xmin-1, ymin-1, xmax, ymax)
    assert target["boxes"].tolist() == [
        [404, 152, 493, 255], [274, 128, 312, 170], [359, 191, 381, 265], [398, 180, 422, 235],
        [269, 179, 291, 247], [293, 175, 312, 241], [67, 95, 293, 375], [0, 70, 87, 332],
        [184, 67, 259, 197], [285, 63, 406, 238]]
    chair, bottle, person = (VOC_CLASSES.index(n) + 1 for n in ("chair", "bottle", "person"))
    assert target["labels"].tolist() == [chair] * 2 + [bottle] * 4 + [person] * 4
    assert target["difficult"].tolist() == [True] * 2 + [False] * 8
    # another image, parsed here independently
    image_id = data.ids[123]
    root = ET.parse(shared_data / "voc2007" / "VOCdevkit" / "VOC2007" / "Annotations"
                    / f"{image_id}.xml").getroot()
    boxes = [[float(o.find("bndbox").findtext(k)) - d for k, d in
              (("xmin", 1), ("ymin", 1), ("xmax", 0), ("ymax", 0))] for o in root.iter("object")]
    assert data[123][1]["boxes"].tolist() == boxes


# ----------------------------------------------------------------------------- errors


def test_bad_roots_splits_and_names_raise_config_error(shared_data, tmp_path):
    missing = tmp_path / "nowhere"
    for name in ("cifar10", "cifar100", "imagefolder", "voc07_cls", "voc_det"):
        with pytest.raises(ConfigError, match="nowhere"):
            build_dataset(name, missing, "train")
        with pytest.raises(ConfigError, match=re.escape(str(tmp_path))):
            build_dataset(name, tmp_path, "train")  # exists, but without the expected files
        with pytest.raises(ConfigError, match="root"):
            build_dataset(name, None, "train")
    with pytest.raises(ConfigError, match="'val'"):
        build_dataset("cifar10", shared_data / "cifar10", "val")
    with pytest.raises(ConfigError, match="'minival'"):
        build_dataset("voc07_cls", shared_data / "voc2007", "minival")
    with pytest.raises(ConfigError, match="'holdout'"):
        build_dataset("synthetic", None, "holdout")
    with pytest.raises(ConfigError, match="imagenet"):
        build_dataset("imagenet", tmp_path, "train")
    with pytest.raises(ConfigError, match="dataset synthetic"):
        build_dataset("synthetic", None, "train", colour=True)
    with pytest.raises(ConfigError, match="num_images"):
        build_dataset("synthetic", None, "train", num_images=0)
    incomplete = tmp_path / "cifar-10-batches-py"
    incomplete.mkdir()
    (incomplete / "batches.meta").write_bytes((shared_data / "cifar10" / "cifar-10-batches-py"
                                               / "batches.meta").read_bytes())
    with pytest.raises(ConfigError, match="data_batch_1"):
        build_dataset("cifar10", tmp_path, "train")


# ----------------------------------------------------------------------------- label fractions


def test_label_fraction_is_class_balanced_and_seeded():
    data = build_dataset("synthetic", None, "train", num_images=500)
    picked = label_fraction_indices(data, 0.1, seed=0)
    counts = np.bincount(np.asarray(data.targets)[picked], minlength=10)
    assert counts.tolist() == [5] * 10  # round(0.1 * 500 / 10)
    assert picked == sorted(set(picked)) and picked == label_fraction_indices(data, 0.1, seed=0)
    assert picked != label_fraction_indices(data, 0.1, seed=1)
    tiny = label_fraction_indices(data, 0.001, seed=0)  # rounds to 0 -> at least 1 per class
    assert np.bincount(np.asarray(data.targets)[tiny]).tolist() == [1] * 10
    everything = label_fraction_indices(data, 1.0, seed=0)  # 50 per class, capped at class size
    class_sizes = np.bincount(data.targets)
    assert class_sizes.min() < 50 < class_sizes.max()
    assert np.bincount(np.asarray(data.targets)[everything]).tolist() == \
        np.minimum(class_sizes, 50).tolist()
    with pytest.raises(ConfigError, match="fraction"):
        label_fraction_indices(data, 0.0, seed=0)
    with pytest.raises(ConfigError, match="targets"):
        label_fraction_indices(build_dataset("synthetic_cls", None, "trainval", num_images=50),
                               0.5, seed=0)


def test_label_fraction_cache_is_written_once_and_read_back(tmp_path):
    data = build_dataset("synthetic", None, "train", num_images=200)
    first = label_fraction_indices(data, 0.1, seed=5, cache_dir=tmp_path)
    path = tmp_path / "synthetic_train_frac0.1_seed5_n200.json"
    assert sorted(p.name for p in tmp_path.iterdir()) == [path.name]
    saved = json.loads(path.read_text())
    assert saved["indices"] == first and saved["size"] == 200 and saved["seed"] == 5
    saved["indices"] = [3, 1, 4]
    path.write_text(json.dumps(saved))
    assert label_fraction_indices(data, 0.1, seed=5, cache_dir=tmp_path) == [3, 1, 4]
    saved["indices"] = [999]
    path.write_text(json.dumps(saved))
    with pytest.raises(ConfigError, match=path.name):
        label_fraction_indices(data, 0.1, seed=5, cache_dir=tmp_path)


def test_label_fraction_from_list_file(shared_data, tmp_path):
    data = build_dataset("imagefolder", shared_data / "hymenoptera" / "hymenoptera_data", "val")
    names = [data.samples[i][0].name for i in (150, 3, 77)]
    list_file = tmp_path / "subset.txt"
    list_file.write_text(f"{names[0]}\nbees/{names[1]}\n\n{names[2]}\n")
    assert label_fraction_indices(data, None, seed=0, list_file=list_file) == [3, 77, 150]
    list_file.write_text(f"{names[0]}\nn01440764_10026.JPEG\n")
    with pytest.raises(ConfigError, match="n01440764_10026.JPEG"):
        label_fraction_indices(data, None, seed=0, list_file=list_file)
