"""Full-image SSL crops (common/data/crops.py): crops come from the whole file with torchvision's
geometry, one per view slot, reproducible per (seed, epoch, item) whatever the loader; the view
pipelines take the pre-cropped slots; the engine trains and resumes on them."""
import numpy as np
import pytest
import torch
from PIL import Image
from torch.utils.data import DataLoader
from torchvision.transforms.v2 import functional as TF

from common.data import build_dataset
from common.data.crops import (VIEW_CHUNK, VIEWS_SALT, Box, FullImageCrops, Slot, decode_crops, draft_request, item_seed,
                               training_source)
from common.engine import train
from common.errors import ConfigError
from common.sampler import ResumableSampler
from common.views import ViewCrops, build_views
from tests.engine_fixtures import tiny_config, tiny_simclr


def coordinate_image(width: int, height: int) -> Image.Image:
    """Red = x, green = y (0..255 across the image): a crop's pixels say where it was cut."""
    x = np.linspace(0, 255, width).round().astype(np.uint8)
    y = np.linspace(0, 255, height).round().astype(np.uint8)
    rgb = np.stack([np.broadcast_to(x, (height, width)), np.broadcast_to(y[:, None], (height, width)),
                    np.full((height, width), 128, np.uint8)], axis=-1)
    return Image.fromarray(np.ascontiguousarray(rgb))


def make_folder(root, count: int = 8, size=(240, 60), fmt: str = "png"):
    for i in range(count):
        folder = root / "train" / f"class{i % 2}"
        folder.mkdir(parents=True, exist_ok=True)
        coordinate_image(*size).save(folder / f"{i}.{fmt}")
    return root


def test_crops_reach_the_sides_of_the_image_that_the_centre_square_drops(tmp_path):
    data = build_dataset("imagefolder", make_folder(tmp_path), "train")  # 240 x 60: 4:1
    crops = FullImageCrops(data, list(build_views("simclr", 32, blur=False)), seed=0)
    reds = torch.stack([crops[(i, epoch)][0][:, 0].float().mean(dim=(1, 2))
                        for i in range(len(crops)) for epoch in range(12)]).flatten()
    # the 256 px centre square of this image spans x in [96, 159]; the full image [0, 255]
    assert reds.min() < 60 and reds.max() > 195
    square = data[0][0][0].float()
    assert square.min() > 90 and square.max() < 165  # what the square mode draws its crops from


def test_a_crop_is_torchvisions_resized_crop_of_the_file_then_its_flip(tmp_path):
    image = coordinate_image(97, 53)
    path = tmp_path / "a.png"
    image.save(path)
    slot = Slot(build_views("crop_flip", 24)[0], load_size=256)
    for seed in range(6):
        got = decode_crops(path, [slot], torch.Generator().manual_seed(seed))[0]
        box = slot.box(53, 97, torch.Generator().manual_seed(seed))
        want = TF.pil_to_tensor(TF.resized_crop(image, int(box.top), int(box.left), int(box.height),
                                                int(box.width), [24, 24], antialias=True))
        want = TF.horizontal_flip(want) if box.flip else want
        assert (got.int() - want.int()).abs().max() <= 1, seed


def test_the_centre_geometry_is_resize_then_centre_crop(tmp_path):
    image = coordinate_image(300, 200)
    path = tmp_path / "a.png"
    image.save(path)
    pipe = build_views("none", 64)[0]  # CQ-Quant's "no augmentation" view
    got = decode_crops(path, [Slot(pipe, load_size=80)], torch.Generator())[0]
    want = TF.pil_to_tensor(TF.center_crop(TF.resize(image, 80, antialias=True), [64, 64]))
    assert (got.float() - want.float()).abs().mean() < 1.5  # one resampling instead of two


def test_jpeg_draft_decodes_no_fewer_pixels_than_every_crop_shows(tmp_path):
    boxes = [Box(0, 0, 400, 300), Box(10, 10, 250, 320)]
    w, h = draft_request(1000, 750, boxes, 100)
    assert (w, h) == (400, 300)  # reduction 2.5: the smallest side, 250, keeps 100 pixels
    assert draft_request(1000, 750, [Box(0, 0, 60, 80)], 100) == (1000, 750)  # an upsampled crop: full size
    big = coordinate_image(1200, 900)
    big.save(tmp_path / "a.jpg", quality=95)
    Image.open(tmp_path / "a.jpg").save(tmp_path / "a.png")  # the same JPEG pixels, decoded in full
    slots = [Slot(build_views("crop_flip", 64, crop_scale=(0.5, 1.0))[0], 256)] * 3
    drafted = decode_crops(tmp_path / "a.jpg", slots, torch.Generator().manual_seed(1)).float()
    full = decode_crops(tmp_path / "a.png", slots, torch.Generator().manual_seed(1)).float()
    assert (drafted - full).abs().mean() < 2.0


def test_crops_depend_on_seed_epoch_and_item_only_not_on_the_workers(tmp_path):
    data = build_dataset("imagefolder", make_folder(tmp_path, count=12, fmt="jpg"), "train")
    crops = FullImageCrops(data, list(build_views("simclr", 32, blur=False)), seed=3)
    assert torch.equal(crops[(2, 1)][0], crops[(2, 1)][0])
    assert not torch.equal(crops[(2, 1)][0], crops[(2, 2)][0])
    assert not torch.equal(crops[(2, 1)][0][0], crops[(2, 1)][0][1])  # the two slots: two crops
    batches = {}
    for workers in (0, 2):
        sampler = ResumableSampler(len(crops), 4, seed=0, keyed=True)
        sampler.set_epoch(1)
        batches[workers] = [b[0].crops for b in DataLoader(crops, batch_size=4, sampler=sampler, num_workers=workers,
                                                           collate_fn=crops.collate)]
    assert len(batches[0]) == 3 and batches[0][0].shape == (4, 2, 3, 32, 32)
    assert all(torch.equal(a, b) for a, b in zip(batches[0], batches[2]))


def test_views_finished_in_the_loader_are_the_pipelines_views_of_the_crops(tmp_path):
    data = build_dataset("imagefolder", make_folder(tmp_path, count=6, fmt="jpg"), "train")
    views = list(build_views("simclr", 32, blur=True))
    crops = FullImageCrops(data, views, seed=1)
    finished = FullImageCrops(data, views, seed=1, finish_views=True)
    items = [crops[(i, 0)] for i in (4, 1, 3, 0, 5, 2)]  # more than one chunk of VIEW_CHUNK images
    raw, labels = crops.collate(items)
    finished_batch, same_labels = finished.collate(items)
    assert (raw.stage, finished_batch.stage) == ("geometry", "finished")
    raw, done = raw.crops, finished_batch.crops
    assert done.dtype == torch.float32 and done.shape == (6, 2, 3, 32, 32) and torch.equal(labels, same_labels)
    assert torch.equal(done, finished.collate(items)[0].crops)  # a batch's views: seeded by its first item
    assert not torch.equal(done[:, 0], done[:, 1])
    g = torch.Generator().manual_seed(item_seed(1, 0, 4) ^ VIEWS_SALT)  # the batch's generator
    for k, view in enumerate(views):  # the pipeline's view of slot k's crops, chunk by chunk
        want = torch.cat([view(ViewCrops(raw[i:i + VIEW_CHUNK], "geometry"), g, slot=k) for i in range(0, 6, VIEW_CHUNK)])
        assert torch.equal(done[:, k], want)
        assert torch.equal(view(finished_batch, None, slot=k), done[:, k])  # the method takes them as they are
    with pytest.raises(ConfigError, match="finished"):
        views[0].augment(finished_batch, g, slot=0)
    sampler = ResumableSampler(len(finished), 3, seed=0, keyed=True)
    loaded = [b[0].crops for b in DataLoader(finished, batch_size=3, sampler=sampler, num_workers=2,
                                             collate_fn=finished.collate)]
    inline = [b[0].crops for b in DataLoader(finished, batch_size=3, sampler=sampler, collate_fn=finished.collate)]
    assert all(torch.equal(a, b) for a, b in zip(loaded, inline))


def test_views_take_their_own_slot_and_skip_only_the_geometry(tmp_path):
    view = build_views("simclr", 16, strength=0.5, blur=False)[0]
    raw = torch.randint(0, 256, (4, 2, 3, 16, 16), dtype=torch.uint8)
    slots = ViewCrops(raw, "geometry")  # the loader says the geometry ran; the pipeline does not guess
    for slot in (0, 1):
        got = view(slots, torch.Generator().manual_seed(0), slot=slot)
        jitter_only = type(view)(view.ops[1:], 16, view.mean, view.std)
        assert torch.equal(got, jitter_only(raw[:, slot], torch.Generator().manual_seed(0)))
    with pytest.raises(ConfigError, match=r"shape \(B, 3, H, W\)"):  # a bare 5-D tensor says nothing
        view(raw, torch.Generator(), slot=0)
    with pytest.raises(ConfigError, match="ViewCrops.stage"):
        ViewCrops(raw, "colour")
    with pytest.raises(ConfigError, match=r"ViewCrops.crops: expected a tensor of shape \(B, K, 3, S, S\)"):
        ViewCrops(raw[:, 0], "geometry")
    with pytest.raises(ConfigError, match="slot None"):
        view(slots, torch.Generator())
    with pytest.raises(ConfigError, match="slot 2"):
        view(slots, torch.Generator(), slot=2)
    with pytest.raises(ConfigError, match="32 px views"):
        build_views("simclr", 32)[0](slots, torch.Generator(), slot=0)


def test_a_data_set_without_files_or_a_view_without_a_crop_is_refused(tmp_path):
    synthetic = build_dataset("synthetic", None, "train", num_images=8, image_size=16)
    assert training_source(synthetic, [], 0) is synthetic  # stored images: crops on the device
    with pytest.raises(ConfigError, match="image files"):
        FullImageCrops(synthetic, list(build_views("simclr", 16)), 0)
    with pytest.raises(ConfigError, match="crops="):
        build_dataset("imagefolder", make_folder(tmp_path), "train", crops="centre")
    square = build_dataset("imagefolder", tmp_path, "train", crops="square")
    assert training_source(square, list(build_views("simclr", 16)), 0) is square


def test_the_engine_trains_and_resumes_on_full_image_crops(tmp_path):
    data = build_dataset("imagefolder", make_folder(tmp_path / "data", count=32, size=(48, 36), fmt="jpg"), "train")
    cfg = tiny_config(steps=6, ckpt_every=2, num_workers=2)
    whole = tiny_simclr()
    metrics = train(whole, data, cfg, tmp_path / "whole")
    assert metrics["status"] == "ok" and metrics["crops"] == "full"

    def crash_at_3(step, state):
        if step == 3:
            raise RuntimeError("stop")

    with pytest.raises(RuntimeError):
        train(tiny_simclr(), data, cfg, tmp_path / "broken", callbacks=[crash_at_3])
    resumed = tiny_simclr()
    train(resumed, data, cfg, tmp_path / "broken")
    for (name, a), b in zip(whole.state_dict().items(), resumed.state_dict().values()):
        assert torch.equal(a, b), name


def test_augmented_evaluations_crop_from_the_whole_file(tmp_path):
    from eval.linear import train_linear_augmented
    from eval.presets import TrainPreset
    from eval.core.sharded import crop_source

    data = build_dataset("imagefolder", make_folder(tmp_path, count=8, size=(96, 24)), "train")
    view = build_views("crop_flip", 16)[0]
    source, order = crop_source(data, view, seed=0)
    keys = order(2, torch.Generator().manual_seed(0))
    assert isinstance(source, FullImageCrops) and sorted(keys) == [(i, 2) for i in range(8)]
    reds = torch.stack([source[k][0][0, 0].float().mean() for e in range(10)
                        for k in order(e, torch.Generator().manual_seed(e))])
    assert reds.min() < 60 and reds.max() > 195  # the square of this 4:1 image spans [96, 159]
    square = build_dataset("imagefolder", tmp_path, "train", crops="square")
    assert crop_source(square, view, 0)[0] is square
    model = torch.nn.Sequential(torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten())
    preset = TrainPreset(name="t", epochs=2, lr=0.1, momentum=0.9, nesterov=False, weight_decay=0.0, batch_size=4,
                         schedule="cosine")
    _, info = train_linear_augmented(model, data, 2, 3, preset, 16, "imagenet")
    assert info["status"] == "ok" and info["train_images_per_s"] > 0


# --------------------------------------------------------------------------------------------
# decode: gpu, the device path (common/data/device_crops.py), run here on CPU tensors
# --------------------------------------------------------------------------------------------

class FixedSlot:
    """A slot whose box is the middle 80 % of each side of any file (optionally mirrored)."""

    def __init__(self, size: int, flip: bool = False):
        self.size, self.flip, self.resample = size, flip, Image.BILINEAR

    def box(self, height, width, generator):
        return Box(width * 0.1, height * 0.1, width * 0.8, height * 0.8, self.flip)


def test_device_crops_match_the_cpu_crops_of_the_same_boxes_on_photos(shared_data):
    """50 VOC2007 photos, a box of 80 % of each side at 224 px, plain and mirrored: the device
    path's code (nvJPEG's place taken by torchvision's CPU decoder, roi_align) against PIL's
    decode and antialiased bilinear resize. Interpolation differs, geometry must not: measured
    mean absolute difference 0.90 of 255, PSNR 42.6 dB, worst photo 1.9."""
    from common.data import device_crops

    photos = sorted((shared_data / "voc2007/VOCdevkit/VOC2007/JPEGImages").glob("*.jpg"))[:50]
    assert len(photos) == 50
    slots = [FixedSlot(224), FixedSlot(224, flip=True)]
    per_photo, squared, count = [], 0.0, 0
    for path in photos:
        cpu = decode_crops(path, slots, torch.Generator())
        payload, boxes = device_crops.read_item(path, slots, torch.Generator())
        assert payload.dim() == 1  # a JPEG travels as its bytes
        device = device_crops.EncodedBatch([payload], boxes[None], 224).to("cpu").crops[0]
        assert device.dtype == torch.uint8 and device.shape == cpu.shape == (2, 3, 224, 224)
        diff = (cpu.float() - device.float()).abs()
        per_photo.append(diff.mean().item())
        squared, count = squared + diff.square().sum().item(), count + diff.numel()
    psnr = 10 * np.log10(255 ** 2 / (squared / count))
    assert np.mean(per_photo) <= 1.5 and max(per_photo) <= 3.0 and psnr >= 36.0, (np.mean(per_photo), psnr)


def test_the_device_path_draws_the_cpu_paths_boxes_and_flips(tmp_path):
    """Same seed, epoch and item: the same boxes and flips on both paths (the coordinate image
    shows where a crop was cut), through a DataLoader with workers; PNGs travel as pixels."""
    root = make_folder(tmp_path / "jpg", count=8, size=(120, 90), fmt="jpg")
    views = list(build_views("simclr", 32, blur=False))
    cpu = FullImageCrops(build_dataset("imagefolder", root, "train"), views, seed=5)
    dev = FullImageCrops(build_dataset("imagefolder", root, "train", decode="gpu"), views, seed=5, decode="gpu")
    sampler = ResumableSampler(len(cpu), 4, seed=0, keyed=True)
    sampler.set_epoch(2)
    for (a, la), (b, lb) in zip(DataLoader(cpu, batch_size=4, sampler=sampler, collate_fn=cpu.collate),
                                DataLoader(dev, batch_size=4, sampler=sampler, num_workers=2, collate_fn=dev.collate)):
        assert len(b) == 4 and torch.equal(la, lb)
        a, b = a.crops, b.to("cpu").crops
        assert b.dtype == torch.uint8 and b.shape == a.shape == (4, 2, 3, 32, 32)
        # red = x, green = y: every crop's mean position agrees within a pixel level or two
        assert (a.float().mean((-1, -2)) - b.float().mean((-1, -2))).abs().max() <= 3.0
    png = FullImageCrops(build_dataset("imagefolder", make_folder(tmp_path / "png", count=2), "train"), views, 0,
                         decode="gpu")
    payload, boxes, _, _ = png[(0, 0)]
    assert payload.shape == (3, 60, 240) and boxes.shape == (2, 5)
    assert png.collate([png[(0, 0)], png[(1, 0)]])[0].to("cpu").shape == (2, 2, 3, 32, 32)


def test_decode_auto_follows_the_device_and_runs_are_labelled(tmp_path):
    from common.data.crops import decode_mode

    root = make_folder(tmp_path / "data", count=16, size=(48, 36), fmt="jpg")
    auto = build_dataset("imagefolder", root, "train")
    assert decode_mode(auto, "cuda") == "gpu" and decode_mode(auto, "cpu") == "cpu"
    assert decode_mode(build_dataset("imagefolder", root, "train", decode="cpu"), "cuda") == "cpu"
    with pytest.raises(ConfigError, match="decode="):
        build_dataset("imagefolder", root, "train", decode="nvjpeg")
    forced = build_dataset("imagefolder", root, "train", decode="gpu")
    metrics = train(tiny_simclr(), forced, tiny_config(steps=3, num_workers=1), tmp_path / "gpu_path")
    assert metrics["status"] == "ok" and metrics["crops"] == "full" and metrics["decode"] == "gpu"
    assert train(tiny_simclr(), auto, tiny_config(steps=2), tmp_path / "cpu_path")["decode"] == "cpu"
