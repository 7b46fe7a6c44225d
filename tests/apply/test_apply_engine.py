"""The apply engine's pieces: render shapes, full-resolution Lab join, gamut, guided filter, planning, scheduling."""

from __future__ import annotations

import os

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from apply_fixtures import bomb_png, gray_image, save_gray, tiny_model, truncated_jpeg
from recolor.apply import join as join_module
from recolor.engine import torch_device
from recolor.apply.join import guided_slope, join, lab_to_srgb, lightness, network_lightness
from recolor.engine.torch_device import TorchEngine
from recolor.apply.pipeline import ApplyOptions, colorize_files, compare_image, output_bit_depth, render_shape
from recolor.apply.plan import Job, default_out, plan_jobs
from recolor.color import lab_to_rgb, rgb_to_lab
from recolor.errors import ImageReadError, UsageError
from recolor.io.photo import Photo


def photo_of(rgb: np.ndarray, *, gray: bool) -> Photo:
    return Photo(path=None, rgb=rgb, alpha=None, format="PNG", mode="L" if gray else "RGB",
                 bit_depth=16 if rgb.dtype == np.uint16 else 8, icc_profile=None, exif=None, dpi=None,
                 is_grayscale=gray)


def lab_of(rgb: np.ndarray) -> torch.Tensor:
    scale = 65535.0 if rgb.dtype == np.uint16 else 255.0
    return rgb_to_lab(torch.from_numpy(rgb.astype(np.float32) / scale).permute(2, 0, 1)[None])[0]


# ------------------------------------------------------------------------------------ pixel math


@pytest.mark.parametrize(("width", "height", "expected"), [
    (6000, 4000, (160, 256)), (4000, 6000, (256, 160)), (500, 500, (256, 256)), (10, 1000, (256, 32)),
    (1224, 816, (160, 256)),
])
def test_render_shape_keeps_aspect_in_multiples_of_32(width, height, expected):
    shape = render_shape(width, height, 256)
    assert shape == expected
    assert all(side % 32 == 0 for side in shape)


def test_render_shape_refuses_sizes_the_unet_cannot_take():
    with pytest.raises(UsageError):
        render_shape(100, 100, 250)


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16])
def test_lightness_is_the_l_of_rgb_to_lab(dtype):
    rng = np.random.default_rng(1)
    top = 65536 if dtype == np.uint16 else 256
    rgb = rng.integers(0, top, size=(20, 30, 3)).astype(dtype)
    assert np.abs(lightness(rgb) - lab_of(rgb)[0].numpy()).max() < 1e-3
    gray = np.repeat(rgb[..., :1], 3, axis=2)
    assert np.abs(lightness(gray, gray=True) - lab_of(gray)[0].numpy()).max() < 1e-3


@pytest.mark.parametrize(("bit_depth", "dtype", "l_error"), [(8, np.uint8, 0.6), (16, np.uint16, 0.01)])
def test_lab_to_srgb_matches_lab_to_rgb_inside_the_gamut_and_keeps_l_and_hue_outside(bit_depth, dtype, l_error):
    torch.manual_seed(0)
    lightness_values = torch.rand(40, 50) * 100
    lightness_values[0, :10] = torch.linspace(0, 0.5, 10)  # near black, where clipping would show most
    ab = torch.randn(2, 40, 50) * 45
    got = lab_to_srgb(lightness_values.numpy(), ab.numpy(), bit_depth=bit_depth)
    assert got.dtype == dtype and got.shape == (40, 50, 3)
    top = np.iinfo(dtype).max
    # The reference in float64: at 16 bits float32 rounding in the reference alone is a tenth of a level.
    linear = lab_to_rgb(torch.cat((lightness_values[None], ab))[None].double(), clamp=False)[0]
    inside = ((linear >= 0) & (linear <= 1)).all(dim=0).numpy()
    assert 0.2 < inside.mean() < 0.9  # both cases are exercised
    expected = (linear.clamp(0, 1) * top + 0.5).floor().permute(1, 2, 0).numpy()
    assert np.abs(got.astype(int) - expected)[inside].max() <= 1
    back = lab_of(got)
    # Outside the gamut: L kept (to the output's rounding), hue kept, chroma reduced, never per-channel clipping.
    assert (back[0] - lightness_values).abs().max() < l_error
    outside = ~torch.from_numpy(inside)
    chroma_in, chroma_out = ab.norm(dim=0), back[1:].norm(dim=0)
    strong = outside & (chroma_out > 10)
    hue_gap = torch.atan2(ab[1], ab[0]) - torch.atan2(back[2], back[1])
    hue_gap = torch.remainder(hue_gap + torch.pi, 2 * torch.pi) - torch.pi
    assert hue_gap[strong].abs().median() < 0.05
    assert (chroma_out[outside] <= chroma_in[outside] + 1).all()
    assert chroma_out[outside].mean() < 0.8 * chroma_in[outside].mean()


def test_join_keeps_every_pixel_of_the_input_lightness_in_any_band_size(monkeypatch):
    gray = gray_image(70, 45)
    photo = photo_of(np.repeat(gray[..., None], 3, axis=2), gray=True)
    ab_small = torch.randn(2, 32, 64) * 20
    l_small = torch.rand(32, 64) * 100
    whole = join(photo, ab_small, l_small)
    monkeypatch.setattr(join_module, "BAND_PIXELS", 100)  # one row per band
    banded = join(photo, ab_small, l_small)
    # OpenCV's kernels round a few ulps differently by a row's length: at most a level apart.
    assert np.abs(whole.astype(int) - banded).max() <= 1 and (whole != banded).mean() < 0.01
    assert whole.shape == (45, 70, 3) and whole.dtype == np.uint8
    assert np.abs(lab_of(whole)[0].numpy() - lab_of(photo.rgb)[0].numpy()).max() < 0.6
    assert lab_of(whole)[1:].abs().mean() > 3  # colored, not gray


def deep_photo(*, gray: bool, height: int = 45, width: int = 70) -> Photo:
    """A 16-bit photo with detail below the 8-bit levels: gray, or RGB with very different channels."""
    rng = np.random.default_rng(3)
    base = gray_image(width, height).astype(np.int64) * 257 + rng.integers(-128, 129, size=(height, width))
    if gray:
        return photo_of(np.repeat(base.clip(0, 65535).astype(np.uint16)[..., None], 3, axis=2), gray=True)
    rgb = np.stack([base, 65535 - base, rng.integers(0, 65536, size=(height, width))], axis=-1)
    return photo_of(rgb.clip(0, 65535).astype(np.uint16), gray=False)


@pytest.mark.parametrize("gray", [True, False])
def test_join_of_a_16_bit_photo_is_16_bit_and_keeps_its_lightness_to_16_bit_precision(monkeypatch, gray):
    photo = deep_photo(gray=gray)
    ab_small = torch.randn(2, 32, 64) * 20 + torch.tensor([25.0, -15.0])[:, None, None]
    l_small = torch.rand(32, 64) * 100
    whole = join(photo, ab_small, l_small)
    assert whole.shape == (45, 70, 3) and whole.dtype == np.uint16
    assert len(np.unique(whole % 257)) > 100  # not 8-bit levels scaled up
    # An 8-bit join would be off by up to 0.6 in L; the 16-bit one only by float rounding.
    assert np.abs(lab_of(whole)[0].numpy() - lightness(photo.rgb, gray=gray)).max() < 0.01
    assert lab_of(whole)[1:].abs().mean() > 5  # colored
    monkeypatch.setattr(join_module, "BAND_PIXELS", 100)  # one row per band
    banded = join(photo, ab_small, l_small)
    assert np.abs(banded.astype(int) - whole).max() <= 1 and (banded != whole).mean() < 0.01
    eight = join(photo, ab_small, l_small, bit_depth=8)
    assert eight.dtype == np.uint8
    # The same colors to 8-bit rounding, except where the gamut search ends a step apart (its
    # tolerance below black is finer at 16 bits).
    assert (np.abs(eight.astype(int) - (whole.astype(int) + 128) // 257) <= 1).mean() > 0.99
    assert np.abs(lab_of(eight)[0].numpy() - lightness(photo.rgb, gray=gray)).max() < 0.6


def test_network_lightness_of_16_bit_rgb_uses_all_three_channels():
    photo = deep_photo(gray=False, height=96, width=128)
    eight_bit = photo_of(((photo.rgb.astype(np.uint32) + 128) // 257).astype(np.uint8), gray=False)
    deep, shallow = network_lightness(photo, (32, 64)), network_lightness(eight_bit, (32, 64))
    assert deep.shape == (32, 64)
    # The same picture at 8 and at 16 bits gives the network the same L (the red channel alone would not).
    assert np.abs(deep - shallow).max() < 0.5
    red_only = network_lightness(photo_of(np.repeat(photo.rgb[..., :1], 3, axis=2), gray=True), (32, 64))
    assert np.abs(deep - red_only).mean() > 5
    gray = deep_photo(gray=True, height=96, width=128)
    expected = network_lightness(photo_of(((gray.rgb.astype(np.uint32) + 128) // 257).astype(np.uint8), gray=True),
                                 (32, 64))
    assert np.abs(network_lightness(gray, (32, 64)) - expected).max() < 0.5


def test_output_bit_depth_is_16_only_for_16_bit_photos_into_png_or_tiff(tmp_path):
    deep, shallow = deep_photo(gray=True), photo_of(gray_image()[..., None].repeat(3, axis=2), gray=True)
    assert output_bit_depth(deep, tmp_path / "a.png", None) == 16
    assert output_bit_depth(deep, tmp_path / "a.TIF", None) == 16
    assert output_bit_depth(deep, tmp_path / "a.tiff", "TIFF") == 16
    assert output_bit_depth(deep, tmp_path / "a.jpg", None) == 8
    assert output_bit_depth(deep, tmp_path / "a.webp", "WEBP") == 8
    assert output_bit_depth(deep, tmp_path / "a.png", "JPEG") == 8  # the format given wins over the suffix
    assert output_bit_depth(shallow, tmp_path / "a.png", None) == 8


def test_join_of_a_color_input_uses_only_its_lightness():
    rng = np.random.default_rng(2)
    rgb = rng.integers(0, 256, size=(30, 40, 3)).astype(np.uint8)
    ab_small = torch.zeros(2, 32, 32)
    out = join(photo_of(rgb, gray=False), ab_small, torch.rand(32, 32) * 100)
    # ab = 0: the result is the gray of the input's L, whatever its colors were.
    assert np.abs(out[..., 0].astype(int) - out[..., 2]).max() <= 1
    assert (lab_of(out)[0] - lab_of(rgb)[0]).abs().max() < 0.6


def test_saturation_scales_chroma_and_zero_gives_gray():
    photo = photo_of(np.full((32, 32, 3), 128, np.uint8), gray=True)
    ab_small = torch.full((2, 32, 32), 10.0)
    plain = lab_of(join(photo, ab_small, torch.full((32, 32), 50.0)))
    double = lab_of(join(photo, ab_small, torch.full((32, 32), 50.0), saturation=2.0))
    gray = join(photo, ab_small, torch.full((32, 32), 50.0), saturation=0.0)
    assert double[1:].norm(dim=0).mean().item() == pytest.approx(2 * plain[1:].norm(dim=0).mean().item(), rel=0.05)
    assert (gray[..., 0] == gray[..., 1]).all() and (gray[..., 1] == gray[..., 2]).all()


def test_guided_upsampling_puts_color_edges_on_the_lightness_edges():
    # Truth at full size: left dark blue, right light orange, the edge off the 8-pixel grid. The
    # network's ab at 1/8 size has a blurred edge; the guided filter recovers the sharp one from L.
    height, width, factor = 64, 128, 8
    lightness_full = np.where(np.arange(width) < width // 2 + 3, 30.0, 75.0)[None].repeat(height, 0)
    ab_full = np.where(lightness_full < 50, -20.0, 20.0)
    lab = torch.tensor(np.stack([lightness_full, ab_full, ab_full]), dtype=torch.float32)[None]
    photo_rgb = np.round(lab_to_rgb(lab)[0].permute(1, 2, 0).numpy() * 255).astype(np.uint8)
    truth = lab_of(photo_rgb)
    small = (height // factor, width // factor)
    ab_small = F.interpolate(truth[1:][None], size=small, mode="area")[0]
    l_small = F.interpolate(truth[:1][None], size=small, mode="area")[0, 0]
    errors = {}
    for mode in ("bilinear", "guided"):
        out = lab_of(join(photo_of(photo_rgb, gray=False), ab_small, l_small, upsample=mode))
        errors[mode] = (out[1:] - truth[1:]).abs().mean().item()
    assert errors["guided"] < 0.3 * errors["bilinear"]
    assert guided_slope(l_small / 100, ab_small).shape == ab_small.shape


def test_guided_upsampling_is_bilinear_where_lightness_is_flat():
    photo = photo_of(np.full((40, 60, 3), 120, np.uint8), gray=True)
    ab_small = torch.randn(2, 8, 12) * 20
    l_small = torch.full((8, 12), float(lightness(photo.rgb[:1, :1], gray=True)[0, 0]))
    assert np.array_equal(join(photo, ab_small, l_small, upsample="guided"), join(photo, ab_small, l_small))


def test_compare_image_is_before_and_after_side_by_side():
    before = np.zeros((300, 600, 3), np.uint8)
    after = np.full((300, 600, 3), 255, np.uint8)
    sheet = compare_image(before, after, max_side=100)
    assert sheet.shape == (50, 208, 3)
    assert sheet[:, :100].max() == 0 and sheet[:, 108:].min() == 255
    deep = compare_image(np.full((300, 600, 3), 65535, np.uint16), np.full((300, 600, 3), 257 * 40, np.uint16),
                                  max_side=100)
    assert deep.dtype == np.uint8 and deep[0, 0, 0] == 255 and deep[0, 150, 0] == 40


# -------------------------------------------------------------------------------------- planning


def test_folders_are_mirrored_and_names_never_collide(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    save_gray(tmp_path / "x" / "a.jpg")
    save_gray(tmp_path / "y" / "a.jpg")
    save_gray(tmp_path / "x" / "a.png")
    save_gray(tmp_path / "album" / "sub" / "b.tif")
    save_gray(tmp_path / "album" / ".hidden.jpg")
    (tmp_path / "album" / "notes.txt").write_text("not an image")
    plan = plan_jobs(["x/a.jpg", "y/a.jpg", "x/a.png", "album"], format="png")
    outputs = [job.output.relative_to(tmp_path / "colorized").as_posix() for job in plan.jobs]
    assert outputs == ["a.png", "a-2.png", "a-3.png", "album/sub/b.png"]
    assert len({str(job.output) for job in plan.jobs}) == 4


def test_two_folders_of_the_same_name_get_their_own_output_folders(tmp_path):
    save_gray(tmp_path / "a" / "photos" / "x.jpg")
    save_gray(tmp_path / "b" / "photos" / "x.jpg")
    plan = plan_jobs([str(tmp_path / "a" / "photos"), str(tmp_path / "b" / "photos")], out=tmp_path / "out")
    assert [job.output.relative_to(tmp_path / "out").as_posix() for job in plan.jobs] == [
        "photos/x.jpg", "photos-2/x.jpg"]
    (tmp_path / "file").write_text("")
    with pytest.raises(UsageError, match="is a file"):
        plan_jobs([str(tmp_path / "a")], out=tmp_path / "file")


def test_suffix_and_format_same_keep_extension_and_gif_becomes_png(tmp_path):
    save_gray(tmp_path / "in" / "a.jpeg")
    save_gray(tmp_path / "in" / "b.gif")
    plan = plan_jobs([str(tmp_path / "in")], out=tmp_path / "out", suffix="_color")
    assert sorted(job.output.name for job in plan.jobs) == ["a_color.jpeg", "b_color.png"]
    assert any("GIF" in note for note in plan.notes)


def test_existing_outputs_are_skipped_unless_overwrite(tmp_path):
    save_gray(tmp_path / "in" / "a.jpg")
    save_gray(tmp_path / "in" / "b.jpg")
    first = plan_jobs([str(tmp_path / "in")], out=tmp_path / "out")
    first.jobs[0].output.parent.mkdir(parents=True)
    first.jobs[0].output.write_bytes(b"done before")
    again = plan_jobs([str(tmp_path / "in")], out=tmp_path / "out")
    assert [job.source.name for job in again.skipped] == ["a.jpg"]
    assert [job.source.name for job in again.jobs] == ["b.jpg"]
    assert len(plan_jobs([str(tmp_path / "in")], out=tmp_path / "out", overwrite=True).jobs) == 2


def test_an_output_never_replaces_an_input(tmp_path):
    save_gray(tmp_path / "a.jpg")
    with pytest.raises(UsageError, match="overwrite an input"):
        plan_jobs([str(tmp_path / "a.jpg")], out=tmp_path)
    assert len(plan_jobs([str(tmp_path / "a.jpg")], out=tmp_path, suffix="_c").jobs) == 1


def test_default_out_is_beside_one_folder_and_never_inside_an_input_folder(tmp_path):
    album, other = tmp_path / "album", tmp_path / "other"
    album.mkdir()
    other.mkdir()
    save_gray(tmp_path / "a.jpg")
    for cwd in (tmp_path, album):
        assert default_out([album], cwd=cwd) == tmp_path / "album-colorized"
    assert default_out([album, other], cwd=tmp_path) == tmp_path / "colorized"
    assert default_out([album, other], cwd=album / "deeper") == tmp_path / "album-colorized"
    assert default_out([tmp_path / "a.jpg"], cwd=album) == album / "colorized"  # no folder input to stay out of


def relative_outputs(plan) -> list[str]:
    return [job.output.relative_to(plan.out).as_posix() for job in plan.jobs]


def test_one_folder_goes_straight_into_out_with_its_sub_folders(tmp_path):
    save_gray(tmp_path / "album" / "a.jpg")
    save_gray(tmp_path / "album" / "sub" / "b.png")
    plan = plan_jobs([str(tmp_path / "album")])
    assert plan.out == tmp_path / "album-colorized"
    assert relative_outputs(plan) == ["a.jpg", "sub/b.png"]
    given = plan_jobs([str(tmp_path / "album")], out=tmp_path / "out")
    assert relative_outputs(given) == ["a.jpg", "sub/b.png"] and given.out == tmp_path / "out"


def test_two_folders_in_turn_never_meet_in_one_default_folder(tmp_path):
    save_gray(tmp_path / "first" / "x.jpg")
    save_gray(tmp_path / "second" / "x.jpg", seed=1)
    first = plan_jobs([str(tmp_path / "first")])
    first.jobs[0].output.parent.mkdir(parents=True)
    first.jobs[0].output.write_bytes(b"the first folder's x.jpg")
    second = plan_jobs([str(tmp_path / "second")])
    assert second.out == tmp_path / "second-colorized" and not second.skipped
    assert [job.output for job in second.jobs] == [tmp_path / "second-colorized" / "x.jpg"]


def test_several_inputs_each_go_under_their_own_name(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    save_gray(tmp_path / "album" / "a.jpg")
    save_gray(tmp_path / "trip" / "sub" / "b.jpg")
    save_gray(tmp_path / "loose.png")
    plan = plan_jobs(["album", "trip", "loose.png"])
    assert plan.out == tmp_path / "colorized"
    assert relative_outputs(plan) == ["album/a.jpg", "trip/sub/b.jpg", "loose.png"]


def test_compare_images_have_one_clean_name_each(tmp_path):
    save_gray(tmp_path / "in" / "a.jpg")
    save_gray(tmp_path / "in" / "a.png")
    save_gray(tmp_path / "in" / "sub" / "c.tif")
    save_gray(tmp_path / "in" / "compare" / "d.jpg")  # an input folder named like the compare folder
    plan = plan_jobs([str(tmp_path / "in")], out=tmp_path / "out", compare=True)
    pairs = {job.output.relative_to(plan.out).as_posix(): job.compare.relative_to(plan.out).as_posix()
             for job in plan.jobs}
    assert pairs == {"a.jpg": "compare-2/a.jpg", "a.png": "compare-2/a-2.jpg", "sub/c.tif": "compare-2/sub/c.jpg",
                     "compare/d.jpg": "compare-2/compare/d.jpg"}
    plain = plan_jobs([str(tmp_path / "in" / "sub")], out=tmp_path / "o2", compare=True)
    assert [job.compare for job in plain.jobs] == [tmp_path / "o2" / "compare" / "c.jpg"]


def test_outputs_never_land_where_the_next_run_would_read_them(tmp_path):
    save_gray(tmp_path / "album" / "a.jpg")
    with pytest.raises(UsageError, match="would land in the input folder"):
        plan_jobs([str(tmp_path / "album")], out=tmp_path / "album", suffix="_c")
    # Beside the folder, or in a folder inside it (skipped when it is read), is fine.
    assert relative_outputs(plan_jobs([str(tmp_path / "album")], out=tmp_path)) == ["a.jpg"]
    assert relative_outputs(plan_jobs([str(tmp_path / "album")], out=tmp_path / "album" / "out")) == ["a.jpg"]


def test_the_output_folder_is_not_read_as_input(tmp_path):
    save_gray(tmp_path / "album" / "a.jpg")
    save_gray(tmp_path / "album" / "out" / "album" / "a.jpg")  # a previous run's output
    plan = plan_jobs([str(tmp_path / "album")], out=tmp_path / "album" / "out")
    assert [job.source for job in plan.jobs + plan.skipped] == [tmp_path / "album" / "a.jpg"]


def test_globs_recursion_and_usage_errors(tmp_path):
    save_gray(tmp_path / "in" / "a.jpg")
    save_gray(tmp_path / "in" / "deep" / "b.jpg")
    assert len(plan_jobs([str(tmp_path / "in" / "*.jpg")], out=tmp_path / "o").jobs) == 1
    assert len(plan_jobs([str(tmp_path / "in")], out=tmp_path / "o", recursive=False).jobs) == 1
    assert len(plan_jobs([str(tmp_path / "in")], out=tmp_path / "o").jobs) == 2
    with pytest.raises(UsageError, match="does not exist"):
        plan_jobs([str(tmp_path / "missing.jpg")], out=tmp_path / "o")
    with pytest.raises(UsageError, match="no file matches"):
        plan_jobs([str(tmp_path / "*.png")], out=tmp_path / "o")
    (tmp_path / "empty").mkdir()
    with pytest.raises(UsageError, match="no image or video files"):
        plan_jobs([str(tmp_path / "empty")], out=tmp_path / "o")


# ------------------------------------------------------------------------------------ scheduling


@pytest.fixture(scope="module")
def colorizer(tmp_path_factory):
    from recolor.hub.registry import load_model

    generator, _ = load_model(str(tiny_model(tmp_path_factory.mktemp("model") / "tiny")))
    return TorchEngine(generator, torch.device("cpu"))


@pytest.mark.parametrize(("batch_size", "budget", "threads"), [(1, 1, 1), (3, 5_000, 2), (8, 10**9, 2)])
def test_every_job_finishes_whatever_the_batch_budget_and_threads(tmp_path, colorizer, batch_size, budget, threads):
    jobs = []
    for index, (width, height) in enumerate([(48, 32), (32, 48), (40, 40), (64, 32), (48, 32), (33, 17), (50, 30)]):
        source = save_gray(tmp_path / "in" / f"p{index}.png", width, height, seed=index)
        jobs.append(Job(source, tmp_path / "out" / f"p{index}.png"))
    options = ApplyOptions(render_size=64, batch_size=batch_size, pixel_budget=budget, io_threads=threads)
    seen = []
    results = colorize_files(jobs, colorizer, options=options, on_result=seen.append)
    assert len(results) == len(seen) == len(jobs)
    assert all(result.error is None for result in results)
    for job in jobs:
        with Image.open(job.source) as source, Image.open(job.output) as output:
            assert output.size == source.size and output.mode == "RGB"


def test_batches_give_the_same_result_as_single_images(tmp_path, colorizer):
    sources = [save_gray(tmp_path / "in" / f"p{i}.png", 48, 32, seed=i) for i in range(4)]
    outputs = {}
    for batch_size in (1, 4):
        jobs = [Job(s, tmp_path / f"out{batch_size}" / s.name) for s in sources]
        colorize_files(jobs, colorizer, options=ApplyOptions(render_size=64, batch_size=batch_size))
        outputs[batch_size] = [np.asarray(Image.open(j.output)) for j in jobs]
    for single, batched in zip(outputs[1], outputs[4]):
        assert np.abs(single.astype(int) - batched).max() <= 1


def test_bad_files_fail_alone_with_their_reason(tmp_path, colorizer):
    good = save_gray(tmp_path / "in" / "good.png")
    bad = {
        "truncated": truncated_jpeg(tmp_path / "in" / "truncated.jpg"),
        "empty": tmp_path / "in" / "empty.jpg",
        "not an image": tmp_path / "in" / "text.png",
        "pixels": bomb_png(tmp_path / "in" / "bomb.png"),
    }
    bad["empty"].write_bytes(b"")
    bad["not an image"].write_text("hello")
    jobs = [Job(path, tmp_path / "out" / path.name) for path in [good, *bad.values()]]
    results = {r.job.source: r for r in colorize_files(jobs, colorizer, options=ApplyOptions(render_size=64))}
    assert results[good].error is None and (tmp_path / "out" / "good.png").exists()
    for words, path in bad.items():
        error = results[path].error
        assert isinstance(error, ImageReadError) and words in error.cause.lower()
        assert not (tmp_path / "out" / path.name).exists()
    assert os.path.getsize(bad["pixels"]) < 200  # the bomb was refused, not decoded


# --------------------------------------------------------------------------------- the network


def _generator_with_real_batch_norms():
    from recolor.nn import UNetGenerator

    torch.manual_seed(0)
    generator = UNetGenerator(width=8).eval()
    with torch.no_grad():  # running statistics and affine parameters far from the identity
        for module in generator.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                module.running_mean.uniform_(-0.5, 0.5)
                module.running_var.uniform_(0.2, 3.0)
                module.weight.uniform_(0.5, 1.5)
                module.bias.uniform_(-0.3, 0.3)
        generator.head.bias.copy_(torch.tensor([0.3, -0.2]))
    return generator


def test_fp32_colorizer_computes_the_generator_and_leaves_it_untouched():
    generator = _generator_with_real_batch_norms()
    before = {name: value.clone() for name, value in generator.state_dict().items()}
    lightness_batch = torch.rand(3, 32, 64) * 100
    with torch.no_grad():
        expected = generator(lightness_batch[:, None] / 50 - 1) * 110
    got = TorchEngine(generator, torch.device("cpu"), precision="fp32").ab_tensor(lightness_batch)
    assert got.shape == (3, 2, 32, 64) and got.dtype == torch.float32 and got.is_contiguous()
    assert (got - expected).abs().max() < 1e-3  # BatchNorms folded, channels_last: the same function
    after = generator.state_dict()
    assert all(torch.equal(before[name], after[name]) for name in before)  # the caller's copy is not folded
    assert all(p.dtype == torch.float32 for p in generator.parameters())


def test_bf16_colorizer_is_within_a_fraction_of_an_ab_unit_of_fp32():
    generator = _generator_with_real_batch_norms()
    lightness_batch = torch.rand(2, 32, 64) * 100
    fp32 = TorchEngine(generator, torch.device("cpu"), precision="fp32").ab_tensor(lightness_batch)
    bf16 = TorchEngine(generator, torch.device("cpu"), precision="bf16").ab_tensor(lightness_batch)
    assert fp32.abs().mean() > 5  # colored enough for the comparison to mean something
    error = (bf16 - fp32).abs()
    assert 0 < error.mean() < 0.5 and error.max() < 3


def test_precision_auto_follows_the_cpu_and_unknown_names_are_usage_errors(monkeypatch):
    cpu = torch.device("cpu")
    monkeypatch.setattr(torch_device, "cpu_has_native_bf16", lambda: True)
    assert torch_device.resolve_precision("auto", cpu) == "bf16"
    monkeypatch.setattr(torch_device, "cpu_has_native_bf16", lambda: False)
    assert torch_device.resolve_precision("auto", cpu) == "fp32"
    assert torch_device.resolve_precision("bf16", cpu) == "bf16"
    assert torch_device.resolve_precision("auto", torch.device("cuda")) == "fp16"
    with pytest.raises(UsageError):
        torch_device.resolve_precision("fp8", cpu)


def test_the_network_runs_with_the_threads_the_io_leaves_and_they_are_restored(tmp_path, colorizer, monkeypatch):
    seen = []
    original = TorchEngine.ab

    def recording(self, batch):
        seen.append(torch.get_num_threads())
        return original(self, batch)

    monkeypatch.setattr(TorchEngine, "ab", recording)
    jobs = [Job(save_gray(tmp_path / "in" / f"p{i}.png", 48, 32, seed=i), tmp_path / "out" / f"p{i}.png")
            for i in range(3)]
    before = torch.get_num_threads()
    results = colorize_files(jobs, colorizer, options=ApplyOptions(render_size=64, batch_size=2, network_threads=1))
    assert all(r.error is None for r in results) and seen == [1, 1]
    assert torch.get_num_threads() == before
    seen.clear()
    colorize_files(jobs, colorizer, options=ApplyOptions(render_size=64, batch_size=3, io_threads=1))
    assert seen == [max(1, (os.cpu_count() or 1) - 1)]
