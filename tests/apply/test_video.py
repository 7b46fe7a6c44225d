"""Films through `recolor apply`: timing, audio and metadata kept, bad files, Ctrl-C, and colors that hold still."""

from __future__ import annotations

import sys
from fractions import Fraction

import numpy as np
import pytest
import torch
from skimage.color import rgb2lab
from typer.testing import CliRunner

pytest.importorskip("av")

from apply_fixtures import save_gray, tiny_model  # noqa: E402
from video_fixtures import film_frames, make_film, read_film  # noqa: E402

from recolor.cli import app  # noqa: E402
from recolor.apply.films import CUT_THRESHOLD, TemporalSmoother, blend, chroma, past_weight, scene_change  # noqa: E402

runner = CliRunner()


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    return tiny_model(tmp_path_factory.mktemp("model"))


def apply(*args: str):
    return runner.invoke(app, ["apply", *args])


def flicker_and_chroma(frames: list[np.ndarray], block: int = 8) -> tuple[float, float]:
    """Mean |ab change| from frame to frame and mean chroma (CIE units), of ab averaged over
    `block` x `block` pixels (grain is not what the eye sees as color flicker)."""
    small = []
    for frame in frames:
        ab = rgb2lab(frame / 255.0)[..., 1:]
        h, w = ab.shape[0] // block * block, ab.shape[1] // block * block
        small.append(ab[:h, :w].reshape(h // block, block, w // block, block, 2).mean(axis=(1, 3)))
    change = np.mean([np.abs(b - a).mean() for a, b in zip(small, small[1:])])
    return float(change), float(np.mean([np.hypot(s[..., 0], s[..., 1]).mean() for s in small]))


# ------------------------------------------------------------------------------ the math alone


def test_blend_keeps_the_chroma_where_a_plain_average_washes_it_out():
    # Hue flips between two directions of chroma 40 every frame: the plain average of the vectors
    # falls to about 28 (cos 45 degrees), the blend keeps 40.
    red, yellow = torch.tensor([40.0, 0.0]), torch.tensor([0.0, 40.0])
    mean_ab, mean_chroma = red.view(2, 1, 1).clone(), torch.full((1, 1), 40.0)
    weight = torch.full((1, 1), 0.8)
    for step in range(30):
        ab = (yellow if step % 2 == 0 else red).view(2, 1, 1)
        mean_ab, mean_chroma, out = blend(mean_ab, mean_chroma, ab, weight)
    assert chroma(mean_ab).item() < 30
    assert chroma(out).item() == pytest.approx(40, abs=0.5)


def test_blend_leaves_still_colors_exactly_as_they_are():
    ab = torch.randn(2, 4, 4) * 30
    _, _, out = blend(ab.clone(), chroma(ab), ab, torch.full((4, 4), 0.8))
    assert torch.allclose(out, ab, atol=1e-4)


def test_scene_change_ignores_exposure_and_finds_cuts():
    first = torch.from_numpy(film_frames(1, noise=0)[0].astype(np.float32)) * (100 / 255)
    other = torch.flip(first, dims=(1,))
    assert scene_change(first, first + 7) == pytest.approx(0, abs=1e-4)  # exposure flicker
    assert scene_change(first, other) > CUT_THRESHOLD
    # A bright object moves in while the exposure rises: where L moved, the past counts for
    # little; where it stood still, for `strength` (the exposure change taken out).
    moved = first + 5
    moved[10:20, 5:15] = 95
    weight = past_weight(first, moved, strength=0.8)
    assert weight[30:, 30:].min() == pytest.approx(0.8) and weight[12:18, 7:13].max() < 0.05
    assert scene_change(first, moved) < CUT_THRESHOLD


def test_smoother_resets_at_a_cut_and_averages_within_a_shot():
    smoother = TemporalSmoother(strength=0.8)
    lightness = torch.full((8, 8), 50.0)
    lightness[:, 4:] = 80
    first, second = torch.full((2, 8, 8), 10.0), torch.full((2, 8, 8), 30.0)
    assert torch.equal(smoother(lightness, first), first)
    within = smoother(lightness + 0.5, second)
    assert torch.allclose(within, torch.full_like(within, 14.0), atol=1e-3)  # 0.8 * 10 + 0.2 * 30
    cut = smoother(torch.flip(lightness, dims=(1,)), second)
    assert torch.equal(cut, second) and smoother.cuts == 1


# ------------------------------------------------------------------------------ through the CLI


def test_a_film_keeps_frames_timing_rotation_audio_and_tags(tmp_path, model):
    source = make_film(tmp_path / "in" / "film.mp4", rotation=90)
    result = apply(str(source), "--model", str(model), "--out", str(tmp_path / "out"), "--render-size", "32")
    assert result.exit_code == 0, result.output
    assert "12 video frames" in result.output
    before, after = read_film(source), read_film(tmp_path / "out" / "film.mp4")
    assert len(after["frames"]) == after["stated_frames"] == 12
    assert after["rate"] == Fraction(24000, 1001) and after["pts_seconds"] == before["pts_seconds"]
    assert abs(after["duration"] - before["duration"]) <= 1e6 / 24
    assert after["rotation"] == 90 and after["title"] == "test film" and after["language"] == "eng"
    assert after["audio"] == ["aac"] and after["audio_packets"] == before["audio_packets"]  # copied, not re-encoded
    assert after["codec"] == "h264"
    # Colored, and the L of each frame is the input's own (to codec precision).
    lab_in = rgb2lab(before["frames"][5] / 255.0)
    lab_out = rgb2lab(after["frames"][5] / 255.0)
    assert np.hypot(lab_out[..., 1], lab_out[..., 2]).mean() > 5
    assert np.abs(lab_out[..., 0] - lab_in[..., 0]).mean() < 1.5
    assert list((tmp_path / "out").iterdir()) == [tmp_path / "out" / "film.mp4"]  # no temporary file left


@pytest.mark.parametrize("suffix", [".mkv", ".webm", ".avi"])
def test_other_containers_keep_their_container_codec_and_audio(tmp_path, model, suffix):
    source = make_film(tmp_path / "in" / f"film{suffix}", film_frames(6))
    result = apply(str(source), "--model", str(model), "--out", str(tmp_path / "out"), "--render-size", "32")
    assert result.exit_code == 0, result.output
    before, after = read_film(source), read_film(tmp_path / "out" / source.name)
    assert len(after["frames"]) == 6 and after["codec"] == before["codec"] and after["audio"] == before["audio"]
    assert after["pts_seconds"] == pytest.approx(before["pts_seconds"], abs=1e-3)


def test_format_converts_videos_and_leaves_photos_alone(tmp_path, model):
    make_film(tmp_path / "in" / "film.mp4", film_frames(4))
    save_gray(tmp_path / "in" / "photo.png")
    result = apply(str(tmp_path / "in"), "--model", str(model), "--out", str(tmp_path / "out"), "--render-size", "32",
                   "--format", "mkv", "--quality", "60")
    assert result.exit_code == 0, result.output
    names = sorted(p.name for p in (tmp_path / "out").rglob("*") if p.is_file())
    assert names == ["film.mkv", "photo.png"]
    after = read_film(next((tmp_path / "out").rglob("film.mkv")))
    assert len(after["frames"]) == 4 and after["codec"] == "h264" and after["audio"] == ["aac"]


def test_smoothing_lowers_flicker_on_frames_that_differ_only_by_noise(tmp_path):
    # Grainy frames of one still picture: every change of color from frame to frame is flicker.
    # Lossless 4:4:4 (FFV1), so that the codec adds none; the built-in model, which (unlike the
    # tiny one) answers grain with a change of color.
    frames = film_frames(16, noise=12, seed=3)
    source = make_film(tmp_path / "in" / "grain.mkv", frames, audio=False, codec="ffv1", pix_fmt="yuv444p")
    figures = {}
    for mode in ("--temporal", "--no-temporal"):
        out = tmp_path / mode.strip("-")
        result = apply(str(source), "--model", "gan", "--out", str(out), "--render-size", "32", mode)
        assert result.exit_code == 0, result.output
        figures[mode] = flicker_and_chroma(read_film(out / "grain.mkv")["frames"])
    (smooth, smooth_chroma), (raw, raw_chroma) = figures["--temporal"], figures["--no-temporal"]
    assert smooth < 0.5 * raw, figures
    assert smooth_chroma > 0.95 * raw_chroma, figures  # not by washing the color out


def test_bad_films_fail_alone_with_their_reason(tmp_path, model):
    folder = tmp_path / "in"
    good = make_film(folder / "good.mp4", film_frames(4))
    cut = folder / "cut.mp4"
    cut.write_bytes(good.read_bytes()[: good.stat().st_size // 2])  # the index (moov) is at the end: lost
    (folder / "text.mkv").write_text("not a film")
    # Index first, so it opens; the frames break off halfway.
    broken = make_film(folder / "broken.mov", film_frames(10, noise=20), faststart=True, audio=False)
    broken.write_bytes(broken.read_bytes()[: broken.stat().st_size * 6 // 10])
    save_gray(folder / "photo.png")
    result = apply(str(folder), "--model", str(model), "--out", str(tmp_path / "out"), "--render-size", "32")
    assert result.exit_code == 1
    output = " ".join(result.output.split())
    assert f"failed: {cut}: cannot be opened as a video" in output
    assert f"failed: {folder / 'text.mkv'}: cannot be opened as a video" in output
    assert f"failed: {broken}: is truncated: " in output or f"failed: {broken}: cannot be decoded after frame" in output
    written = sorted(p.name for p in (tmp_path / "out").rglob("*") if p.is_file())
    assert written == ["good.mp4", "photo.png"]  # the good ones, and no temporary file


def test_existing_outputs_are_skipped_unless_overwrite(tmp_path, model):
    source = make_film(tmp_path / "in" / "film.mp4", film_frames(3))
    args = (str(source), "--model", str(model), "--out", str(tmp_path / "out"), "--render-size", "32")
    assert apply(*args).exit_code == 0
    output = tmp_path / "out" / "film.mp4"
    stamp = output.stat().st_mtime_ns
    again = apply(*args)
    assert "nothing to do" in again.output and output.stat().st_mtime_ns == stamp
    assert apply(*args, "--overwrite").exit_code == 0 and output.stat().st_mtime_ns != stamp


def test_a_film_with_no_video_stream_is_named(tmp_path, model):
    import av

    path = tmp_path / "in" / "sound.mp4"
    path.parent.mkdir()
    with av.open(str(path), "w") as container:
        sound = container.add_stream("aac", rate=48000)
        sound.layout = "mono"
        block = av.AudioFrame.from_ndarray(np.zeros((1, 1024), np.float32), format="flt", layout="mono")
        block.sample_rate, block.pts = 48000, 0
        container.mux(sound.encode(block))
        container.mux(sound.encode(None))
    result = apply(str(path), "--model", str(model), "--out", str(tmp_path / "out"), "--render-size", "32")
    assert result.exit_code == 1 and "holds no video stream" in result.output


def test_without_pyav_a_film_says_how_to_install_it(tmp_path, model, monkeypatch):
    source = make_film(tmp_path / "in" / "film.mp4", film_frames(3))
    save_gray(tmp_path / "in" / "photo.png")
    monkeypatch.setitem(sys.modules, "av", None)  # `import av` now raises ImportError
    result = apply(str(tmp_path / "in"), "--model", str(model), "--out", str(tmp_path / "out"), "--render-size", "32")
    assert result.exit_code == 1
    line = " ".join(result.output.split())
    assert f"failed: {source}: is a video, and reading videos needs PyAV, which is not installed" in line
    assert 'pip install "recolor-cli[video]"' in line
    assert [p.name for p in (tmp_path / "out").rglob("*.png")] == ["photo.png"]


def test_ctrl_c_leaves_no_partial_film_and_says_what_is_left(tmp_path, model, monkeypatch):
    from recolor.io import video as videoio

    make_film(tmp_path / "in" / "a.mp4", film_frames(8))
    make_film(tmp_path / "in" / "b.mp4", film_frames(8))
    write = videoio.VideoWriter.write

    def interrupted(self, frame, rgb):
        if self.path.name == "b.mp4" and self.written == 3:
            raise KeyboardInterrupt
        write(self, frame, rgb)

    monkeypatch.setattr(videoio.VideoWriter, "write", interrupted)
    result = apply(str(tmp_path / "in"), "--model", str(model), "--out", str(tmp_path / "out"), "--render-size", "32")
    assert result.exit_code == 130
    line = " ".join(result.output.split())
    assert "interrupted: 1 of 2 file(s) colorized into" in line
    assert "1 left (the film being colorized was discarded whole)" in line
    written = sorted(p.name for p in (tmp_path / "out").rglob("*") if p.is_file())
    assert written == ["a.mp4"]  # no partial b.mp4, no temporary file
