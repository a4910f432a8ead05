"""Batched self-supervised views (common/views.py) against torchvision's functionals, colorsys
and hand-computed cases; seeding, shapes, ranges, per-sample randomness."""
import colorsys
import itertools

import pytest
import torch
import torchvision.transforms.v2 as T
import torchvision.transforms.v2.functional as TF

from common import views as V
from common.errors import ConfigError

RECIPES = ["simclr", "byol", "burn", "mocov2", "infomin", "crop_flip"]


def gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def images_u8(b: int = 8, size: int = 32, seed: int = 0) -> torch.Tensor:
    return torch.randint(0, 256, (b, 3, size, size), generator=gen(seed), dtype=torch.uint8)


def images_float(b: int = 8, size: int = 32, seed: int = 0) -> torch.Tensor:
    return images_u8(b, size, seed).float() / 255


def special_pixels(size: int = 16) -> torch.Tensor:
    """Random pixels plus the corner cases of the colour maths: grays, black, white, pure and
    half-saturated primaries, ties between channels, values exactly at 0.5."""
    x = images_float(4, size, seed=3)
    cases = torch.tensor([[0, 0, 0], [1, 1, 1], [.5, .5, .5], [1, 0, 0], [0, 1, 0], [0, 0, 1], [1, 1, 0],
                          [0, 1, 1], [1, 0, 1], [.2, .6, .6], [.6, .6, .2], [.7, .2, .7], [.9, .1, .3],
                          [.3, .9, .1], [.1, .3, .9], [.5, .25, .75]])
    x[0, :, 0, : len(cases)] = cases.T
    return x


# --------------------------------------------------------------------------- recipes

@pytest.mark.parametrize("name", RECIPES)
def test_recipe_seeded_shape_dtype_range_and_normalization(name):
    x = images_u8()
    for pipe in V.build_views(name, 32):
        a, b, c = pipe(x, gen(1)), pipe(x, gen(1)), pipe(x, gen(2))
        assert a.shape == (8, 3, 32, 32) and a.dtype == torch.float32
        assert torch.equal(a, b)
        assert not torch.allclose(a, c)
        raw = pipe.augment(x, gen(1))
        assert raw.min() >= 0 and raw.max() <= 1
        mean = torch.tensor(V.IMAGENET_MEAN).view(1, 3, 1, 1)
        std = torch.tensor(V.IMAGENET_STD).view(1, 3, 1, 1)
        torch.testing.assert_close(a, (raw - mean) / std, atol=1e-6, rtol=0)


@pytest.mark.parametrize("name", RECIPES)
def test_uint8_and_float_inputs_give_the_same_views(name):
    x = images_u8(size=64)
    for pipe in V.build_views(name, 48):
        out = pipe(x, gen(5))
        assert out.shape == (8, 3, 48, 48)
        x_float = x.float() / 255
        assert torch.equal(out, pipe(x_float, gen(5)))
        assert torch.equal(x_float, x.float() / 255)  # the input batch is not modified in place


def test_identical_images_get_different_views_across_the_batch():
    x = images_u8(1).expand(8, -1, -1, -1)
    out = V.simclr_views(32)(x, gen(0))
    diffs = [(out[i] - out[j]).abs().max().item() for i, j in itertools.combinations(range(8), 2)]
    assert min(diffs) > 1e-2


def test_recipe_numbers():
    simclr = V.simclr_views(32, strength=0.5, blur=False, norm="cifar100")
    crop, jitter, gray = simclr.ops
    assert (crop.scale, jitter.brightness, jitter.contrast, jitter.saturation, jitter.hue, jitter.p, gray.p) == \
        ((0.08, 1.0), 0.4, 0.4, 0.4, 0.1, 0.8, 0.2)
    assert (simclr.mean, simclr.std) == (V.CIFAR100_MEAN, V.CIFAR100_STD)
    assert isinstance(V.simclr_views(224).ops[-1], V.GaussianBlur) and V.simclr_views(224).ops[-1].p == 0.5
    view1, view2 = V.byol_views(224)
    assert [view1.ops[3].p, view1.ops[4].p, view2.ops[3].p, view2.ops[4].p] == [1.0, 0.0, 0.1, 0.2]
    assert (view1.ops[1].brightness, view1.ops[1].contrast, view1.ops[1].saturation, view1.ops[1].hue) == \
        (0.4, 0.4, 0.2, 0.1)
    burn = V.burn_views(224)
    assert burn.ops[0].interpolation == "bicubic" and burn.ops[1].p == 0.6 and burn.ops[3].p == 0.2
    assert not any(isinstance(op, V.Solarize) for op in burn.ops)
    assert V.mocov2_views(224).ops[0].scale == (0.2, 1.0)
    assert any(isinstance(op, V.RandAugment) for op in V.infomin_views(224).ops)
    pair = V.build_views("burn", 32)
    assert pair[0] is pair[1]


def test_build_views_rejects_unknown_names_and_options():
    with pytest.raises(ConfigError, match="views"):
        V.build_views("simclr2", 32)
    with pytest.raises(ConfigError, match="views.blurr"):
        V.build_views("simclr", 32, blurr=False)
    with pytest.raises(ConfigError, match="norm"):
        V.build_views("simclr", 32, norm="mnist")


def test_bad_inputs_raise_config_error():
    pipe = V.simclr_views(32)
    with pytest.raises(ConfigError, match="images"):
        pipe(torch.zeros(8, 1, 32, 32), gen(0))
    with pytest.raises(ConfigError, match="images"):
        pipe(torch.zeros(8, 3, 32, 32, dtype=torch.int32), gen(0))
    with pytest.raises(ConfigError, match="generator"):
        pipe(images_u8(), None)
    with pytest.raises(ConfigError, match="p"):
        V.ColorJitter(p=1.5)
    with pytest.raises(ConfigError, match="scale"):
        V.RandomResizedCrop(32, scale=(0.5, 0.2))
    with pytest.raises(ConfigError, match="out_size"):
        V.ViewPipeline([V.RandomResizedCrop(32)], out_size=64)
    with pytest.raises(ConfigError, match="interpolation"):
        V.RandomResizedCrop(32, interpolation="nearest")


# --------------------------------------------------------------------------- every op: p=1 / p=0

OPS_WITH_P = {
    "jitter": lambda p: V.ColorJitter(0.4, 0.4, 0.4, 0.1, p=p),
    "grayscale": lambda p: V.RandomGrayscale(p),
    "blur": lambda p: V.GaussianBlur(p, sigma=(1.0, 2.0)),  # sigma 0.1 would be a no-op on a 3-tap kernel
    "solarize": lambda p: V.Solarize(p),
    "flip": lambda p: V.RandomResizedCrop(32, scale=(1, 1), ratio=(1, 1), flip_p=p),
    "randaugment": lambda p: V.RandAugment(op_p=p),
}


@pytest.mark.parametrize("name", sorted(OPS_WITH_P))
def test_op_changes_every_image_at_p1_and_none_at_p0(name):
    x = images_float()
    assert torch.equal(OPS_WITH_P[name](0.0)(x, gen(0)), x)
    changed = (OPS_WITH_P[name](1.0)(x, gen(0)) - x).abs().amax(dim=(1, 2, 3))
    if name == "randaugment":  # some of its ops are no-ops on noise images (autocontrast at full range)
        assert (changed > 1e-3).sum() >= 4
    else:
        assert (changed > 1e-3).all()


def test_crop_changes_images():
    x = images_float()
    out = V.RandomResizedCrop(32, flip_p=0.0)(x, gen(0))
    assert ((out - x).abs().amax(dim=(1, 2, 3)) > 1e-2).all()


# --------------------------------------------------------------------------- colour ops vs torchvision

def per_image(fn, x, factors):
    return torch.stack([fn(x[i], float(factors[i])) for i in range(len(x))])


@pytest.mark.parametrize("ours, theirs", [(V.adjust_brightness, TF.adjust_brightness),
                                          (V.adjust_contrast, TF.adjust_contrast),
                                          (V.adjust_saturation, TF.adjust_saturation),
                                          (V.adjust_sharpness, TF.adjust_sharpness)])
def test_blend_adjustments_match_torchvision(ours, theirs):
    x = special_pixels()
    factors = torch.tensor([0.0, 0.35, 1.0, 1.8])
    torch.testing.assert_close(ours(x, factors), per_image(theirs, x, factors), atol=1e-5, rtol=0)


def test_hue_matches_torchvision():
    x = special_pixels().repeat(2, 1, 1, 1)
    shifts = torch.tensor([-0.5, -0.31, -0.1, 0.0, 0.02, 0.17, 0.33, 0.5])
    ours, theirs = V.adjust_hue(x, shifts), per_image(TF.adjust_hue, x, shifts)
    torch.testing.assert_close(ours, theirs, atol=1e-3, rtol=0)
    assert (ours - theirs).abs().max() < 1e-5  # in fact float32 rounding only


def test_rgb_hsv_against_colorsys_and_round_trip():
    x = special_pixels()
    hsv = V.rgb_to_hsv(x)
    pixels = x[0].permute(1, 2, 0).reshape(-1, 3)
    expected = torch.tensor([colorsys.rgb_to_hsv(*p.tolist()) for p in pixels])
    torch.testing.assert_close(hsv[0].permute(1, 2, 0).reshape(-1, 3), expected, atol=1e-6, rtol=0)
    torch.testing.assert_close(V.hsv_to_rgb(hsv), x, atol=1e-6, rtol=0)


def test_grayscale_and_solarize_match_torchvision():
    x = special_pixels()
    x[1, :, 3, :4] = 0.5  # exactly at the threshold: inverted
    torch.testing.assert_close(V.RandomGrayscale(1.0)(x, gen(0)), TF.rgb_to_grayscale(x, num_output_channels=3),
                               atol=1e-6, rtol=0)
    assert torch.equal(V.Solarize(1.0)(x, gen(0)), TF.solarize(x, 0.5))


def test_jitter_per_sample_order_matches_torchvision_sequence():
    op = V.ColorJitter(0.8, 0.8, 0.8, 0.2, p=1.0)
    x = images_float(48, 16)
    params = op.sample(48, 16, 16, gen(7))
    assert set((params["order"] == 3).int().argmax(1).tolist()) == {0, 1, 2, 3}  # hue at every position
    fns = [TF.adjust_brightness, TF.adjust_contrast, TF.adjust_saturation, TF.adjust_hue]
    names = ["brightness", "contrast", "saturation", "hue"]
    expected = []
    for i in range(48):
        y = x[i]
        for k in params["order"][i].tolist():
            y = fns[k](y, float(params[names[k]][i]))
        expected.append(y)
    torch.testing.assert_close(op.apply(x, params), torch.stack(expected), atol=1e-5, rtol=0)


def test_jitter_schedule_splits_the_order_at_hue():
    before, after = V.ColorJitter.schedule(torch.tensor([[3, 0, 1, 2], [0, 1, 2, 3], [1, 3, 2, 0], [2, 0, 3, 1]]))
    assert before.tolist() == [[-1, -1, -1], [0, 1, 2], [1, -1, -1], [2, 0, -1]]
    assert after.tolist() == [[0, 1, 2], [-1, -1, -1], [2, 0, -1], [1, -1, -1]]


def test_jitter_parameters_are_per_sample_and_in_range():
    params = V.ColorJitter(0.4, 0.3, 0.2, 0.1, p=0.8).sample(2400, 8, 8, gen(3))
    on = params["apply"]
    assert 0.77 < on.float().mean() < 0.83
    for name, low, high, neutral in [("brightness", 0.6, 1.4, 1.0), ("contrast", 0.7, 1.3, 1.0),
                                     ("saturation", 0.8, 1.2, 1.0), ("hue", -0.1, 0.1, 0.0)]:
        f = params[name]
        assert f[on].min() >= low and f[on].max() <= high and f[on].unique().numel() > 0.99 * on.sum()
        assert (f[~on] == neutral).all()
    counts = torch.unique(params["order"], dim=0, return_counts=True)[1]
    assert len(counts) == 24 and counts.min() > 60  # all 24 orders, about 100 each


# --------------------------------------------------------------------------- geometry

def test_full_crop_is_identity_and_flip_is_torch_flip():
    x = images_float()
    for mode in ("bilinear", "bicubic"):
        crop = V.RandomResizedCrop(32, scale=(1, 1), ratio=(1, 1), flip_p=0.0, interpolation=mode)
        torch.testing.assert_close(crop(x, gen(0)), x, atol=1e-5, rtol=0)
        flip = V.RandomResizedCrop(32, scale=(1, 1), ratio=(1, 1), flip_p=1.0, interpolation=mode)
        torch.testing.assert_close(flip(x, gen(0)), torch.flip(x, dims=[-1]), atol=1e-5, rtol=0)


def test_crop_boxes_follow_torchvision_sampler():
    n, side = 4000, 32
    ours = V.RandomResizedCrop(side).sample(n, side, side, gen(11))
    h, w, top, left = ours["height"], ours["width"], ours["top"], ours["left"]
    assert (h >= 1).all() and (top >= 0).all() and (top + h <= side).all()
    assert (w >= 1).all() and (left >= 0).all() and (left + w <= side).all()
    torch.manual_seed(11)
    tv = T.RandomResizedCrop(side)
    boxes = [tv.make_params([torch.zeros(3, side, side)]) for _ in range(n)]
    tv_area = torch.tensor([b["height"] * b["width"] for b in boxes], dtype=torch.float64) / side ** 2
    tv_ratio = torch.tensor([b["width"] / b["height"] for b in boxes], dtype=torch.float64).log()
    tv_top = torch.tensor([b["top"] for b in boxes], dtype=torch.float64)
    area = (h * w).double() / side ** 2
    assert abs(area.mean() - tv_area.mean()) < 0.02
    assert abs((w / h).double().log().mean() - tv_ratio.mean()) < 0.02
    assert abs(top.double().mean() - tv_top.mean()) < 0.5
    assert 0.45 < ours["flip"].float().mean() < 0.55


def test_crop_falls_back_to_centre_crop():
    crop = V.RandomResizedCrop(32, scale=(1, 1), ratio=(2, 2), flip_p=0.0)  # every trial is too wide
    params = crop.sample(4, 32, 32, gen(0))
    assert params["width"].tolist() == [32] * 4 and params["height"].tolist() == [16] * 4
    assert params["top"].tolist() == [8] * 4 and params["left"].tolist() == [0] * 4
    x = images_float(4)
    expected = TF.resized_crop(x, 8, 0, 16, 32, [32, 32], antialias=False)
    torch.testing.assert_close(crop.apply(x, params)[:, :, 1:-1], expected[:, :, 1:-1], atol=1e-5, rtol=0)


def test_crop_matches_torchvision_resized_crop_inside_the_box():
    crop = V.RandomResizedCrop(48, scale=(0.5, 1.0))  # upsampling, no antialiasing question
    x = images_float(8)
    params = crop.sample(8, 32, 32, gen(4))
    assert params["flip"].any() and not params["flip"].all()
    expected = []
    for i in range(8):
        y = TF.resized_crop(x[i], int(params["top"][i]), int(params["left"][i]), int(params["height"][i]),
                            int(params["width"][i]), [48, 48], antialias=False)
        expected.append(TF.horizontal_flip(y) if params["flip"][i] else y)
    # the outermost output pixels read just outside the box (torchvision clamps to the box)
    torch.testing.assert_close(crop.apply(x, params)[..., 1:-1, 1:-1], torch.stack(expected)[..., 1:-1, 1:-1],
                               atol=1e-5, rtol=0)


# --------------------------------------------------------------------------- blur

def test_blur_kernel_size_rule():
    assert [V.blur_kernel_size(s) for s in (224, 96, 64, 32, 16)] == [23, 9, 7, 3, 3]


def test_blur_of_a_constant_image_is_constant():
    x = torch.full((8, 3, 32, 32), 0.3)
    out = V.GaussianBlur(1.0, sigma=(0.1, 2.0))(x, gen(0))
    torch.testing.assert_close(out, x, atol=1e-6, rtol=0)


def test_blur_matches_torchvision_per_sample_sigma():
    x = images_float(4, 32)
    sigma = torch.tensor([0.3, 0.9, 1.3, 2.0])
    ours = V.gaussian_blur(x, sigma, 7)
    theirs = torch.stack([TF.gaussian_blur(x[i], [7, 7], [float(s)] * 2) for i, s in enumerate(sigma)])
    # separable vs 2-D kernel: float32 summation order only
    torch.testing.assert_close(ours, theirs, atol=1e-5, rtol=0)
    params = V.GaussianBlur(1.0).sample(8, 32, 32, gen(0))
    assert params["sigma"].unique().numel() == 8 and params["sigma"].min() >= 0.1 and params["sigma"].max() <= 2


# --------------------------------------------------------------------------- RandAugment kernels

def test_equalize_autocontrast_posterize_match_torchvision():
    x8 = images_u8(4, 16)
    x8[1] = x8[1] // 4 + 60  # a low-contrast image, so equalize and autocontrast really act
    x8[2, 0] = 7  # a constant channel (left unchanged by both)
    x = x8.float() / 255
    assert torch.equal(torch.round(V.equalize(x) * 255).to(torch.uint8), TF.equalize(x8))
    torch.testing.assert_close(V.autocontrast(x), TF.autocontrast(x), atol=1e-6, rtol=0)
    bits = torch.tensor([0, 2, 3, 4])
    assert torch.equal(torch.round(V.posterize(x, bits) * 255).to(torch.uint8),
                       torch.stack([TF.posterize(x8[i], int(b)) for i, b in enumerate(bits)]))


def _randaugment_params(op_name: str, level: float, sign: float = 1.0, b: int = 2) -> dict:
    return {"op": torch.full((b, 1), V.RANDAUGMENT_OPS.index(op_name)), "apply": torch.ones(b, 1, dtype=torch.bool),
            "level": torch.full((b, 1), level), "sign": torch.full((b, 1), sign)}


def test_randaugment_translate_and_rotate_by_hand():
    ra = V.RandAugment(num_ops=1)
    x = images_float(2, 32)
    out = ra.apply(x, _randaugment_params("translate_x", 4 / (0.45 * 32)))  # 4 pixels: x_in = x_out + 4
    torch.testing.assert_close(out[..., :28], x[..., 4:], atol=1e-4, rtol=0)
    fill = torch.tensor(V.RANDAUGMENT_FILL).view(1, 3, 1, 1).expand(2, 3, 32, 4)
    torch.testing.assert_close(out[..., 28:], fill, atol=1e-4, rtol=0)
    rotated = ra.apply(x, _randaugment_params("rotate", 3.0))  # 90 degrees counter-clockwise
    torch.testing.assert_close(rotated, torch.rot90(x, 1, dims=(-2, -1)), atol=1e-4, rtol=0)


def test_randaugment_parameters():
    params = V.RandAugment().sample(3000, 8, 8, gen(0))
    assert params["op"].shape == (3000, 2) and set(params["op"].unique().tolist()) == set(range(15))
    assert 0.47 < params["apply"].float().mean() < 0.53
    level = params["level"]
    assert level.max() == 1.0 and 0.75 < level.min()  # N(10, 0.5) clipped at 10
    assert 0.45 < (level == 1.0).float().mean() < 0.55


# --------------------------------------------------------------------------- evaluation views

def test_eval_transform_is_deterministic_centre_crop():
    x = images_u8(4, 64)
    pipe = V.eval_transform(56, norm="cifar10")
    expected = pipe.normalize(x[..., 4:60, 4:60].float() / 255)
    assert torch.equal(pipe(x), expected)
    assert torch.equal(V.eval_transform(32).augment(images_u8(4, 32)), images_float(4, 32))
    resized = V.eval_transform(32, resize=36).augment(x)
    torch.testing.assert_close(resized, TF.center_crop(TF.resize(x.float() / 255, [36], antialias=True), [32]),
                               atol=1e-6, rtol=0)
    assert V.eval_transform(32).augment(images_u8(2, 16)).shape == (2, 3, 32, 32)
