"""Reading and writing real-world video files through PyAV (FFmpeg's libraries, shipped in its wheels).

`VideoReader` streams an input's decoded frames as 8-bit sRGB arrays, in decoding order, along
with the packets of its audio streams, untouched. `VideoWriter` writes the colorized frames into a
temporary file in the target folder, with the input's frame timestamps (so frame count, frame rate,
time base and duration are the input's, variable frame rates included), rotation, color range and
matrix, container and stream metadata and chapters, and the audio packets copied as they are
(never re-encoded); the file is renamed onto the target only once complete.

The video codec is the input's where this FFmpeg can encode it (H.264 -> libx264, HEVC -> libx265,
VP9 -> libvpx-vp9, AV1 -> libsvtav1, MPEG-4, MJPEG, ProRes, FFV1, ...), else the container's
default. Quality: by default a constant quality of 95 (about visually lossless), its bit rate
capped at 1.5 times the input's (so the output is about the input's size, or smaller);
`quality` 1-100 asks for that constant quality uncapped (see `encoder_options`). The pixel
format is the input's where the encoder takes it and it holds color
(a gray input gets yuv420p). 10-bit inputs are colorized at 8 bits.

PyAV is the extra `recolor-cli[video]`; it is imported only when a video is opened, and its
absence is a `VideoError` naming the file and the install command.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np

from recolor.errors import VideoError

# Container suffix -> FFmpeg muxer. Inputs with these suffixes (any case) are videos.
_MUXERS = {".mp4": "mp4", ".m4v": "mp4", ".mov": "mov", ".mkv": "matroska", ".webm": "webm", ".avi": "avi"}
VIDEO_SUFFIXES: frozenset[str] = frozenset(_MUXERS)
# `recolor apply --format` values that convert videos (photos keep their own format with them).
VIDEO_FORMAT_SUFFIXES = {"mp4": ".mp4", "mkv": ".mkv", "mov": ".mov", "webm": ".webm"}
INSTALL_FIX = 'pip install "recolor-cli[video]"'
# The default output's bit rate is at most this times the input's.
RATE_HEADROOM = 1.5
# Global tags the muxer writes itself; copying the input's would describe the wrong file.
_OWN_TAGS = frozenset({"encoder", "major_brand", "minor_version", "compatible_brands", "duration"})
# WebM holds only these video codecs; converting into it re-encodes to the first one this FFmpeg has.
_WEBM_CODECS = ("libvpx-vp9", "libvpx", "libsvtav1")


def is_video(path: Path) -> bool:
    return path.suffix.lower() in VIDEO_SUFFIXES


def import_av(path: Path) -> ModuleType:
    """The `av` module, or a VideoError naming `path` and the install command."""
    try:
        import av
    except ImportError:
        raise VideoError(f"{path}: is a video, and reading videos needs PyAV, which is not installed",
                         INSTALL_FIX) from None
    return av


@dataclass(frozen=True)
class Frame:
    """One decoded frame: `rgb` (H, W, 3) uint8 sRGB as displayed before rotation; `pts` in
    `time_base` units (None where the container has none)."""

    rgb: np.ndarray
    pts: int | None
    time_base: Fraction | None


@dataclass(frozen=True)
class VideoInfo:
    """What the writer needs to know about an input's video stream."""

    width: int
    height: int
    frames: int | None  # as the container states it (exact in MP4 and MOV; None where unknown)
    rate: Fraction | None
    time_base: Fraction
    codec: str
    pix_fmt: str | None
    bit_rate: int | None
    colorspace: int
    color_range: int
    color_primaries: int
    color_trc: int
    muxer: str

    @property
    def seconds(self) -> float | None:
        return float(self.frames / self.rate) if self.frames and self.rate else None


class VideoReader:
    """An input video, opened for streaming: `items()` yields `Frame`s of its first video stream
    and the audio packets (opaque, for `VideoWriter.copy`) in the order the file holds them."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._av = import_av(path)
        try:
            self._container = self._av.open(str(path), metadata_errors="replace")
        except (self._av.FFmpegError, OSError, UnicodeDecodeError) as error:
            raise VideoError(f"{path}: cannot be opened as a video: {_reason(error)}") from None
        try:
            if not self._container.streams.video:
                raise VideoError(f"{path}: holds no video stream")
            self._video = self._container.streams.video[0]
            context = self._video.codec_context
            if context is None or not context.codec.is_decoder:
                name = context.name if context is not None else "unknown"
                raise VideoError(f"{path}: its video codec ({name}) cannot be decoded by PyAV's FFmpeg",
                                 "convert it with ffmpeg to H.264 first")
            self._video.thread_type = "AUTO"  # frame and slice threads inside FFmpeg's decoder
            self.audio = list(self._container.streams.audio)
            self.info = self._describe()
        except BaseException:
            self._container.close()
            raise
        self.decoded = 0
        self.rotation = 0  # counter-clockwise degrees, from the first frame's display matrix

    def _describe(self) -> VideoInfo:
        stream, context = self._video, self._video.codec_context
        bit_rate = stream.bit_rate or context.bit_rate or None
        if not bit_rate and self._container.bit_rate:
            # Matroska states no per-stream bit rate: the container's less its audio streams'.
            audio = sum(s.bit_rate or s.codec_context.bit_rate or 0 for s in self.audio)
            bit_rate = max(self._container.bit_rate - audio, 0) or None
        return VideoInfo(
            width=context.width, height=context.height, frames=stream.frames or None,
            rate=stream.average_rate or stream.guessed_rate or None, time_base=stream.time_base or Fraction(1, 90000),
            codec=context.name, pix_fmt=context.pix_fmt, bit_rate=bit_rate,
            colorspace=context.colorspace, color_range=context.color_range,
            color_primaries=context.color_primaries, color_trc=context.color_trc,
            muxer=self._container.format.name)

    @property
    def metadata(self) -> dict[str, str]:
        return dict(self._container.metadata)

    @property
    def video_metadata(self) -> dict[str, str]:
        return dict(self._video.metadata)

    def chapters(self) -> list[dict[str, Any]]:
        return list(self._container.chapters())

    def items(self) -> Iterator[Frame | Any]:
        """Frames and audio packets in file order; a file that breaks off or holds corrupt data
        raises VideoError naming the frame where it happened."""
        av = self._av
        video_index = self._video.index
        try:
            for packet in self._container.demux(self._video, *self.audio):
                if packet.stream.index != video_index:
                    if packet.dts is not None:  # the demuxer's empty flush packets carry none
                        yield packet
                    continue
                for frame in packet.decode():  # an empty packet (dts None) flushes the decoder
                    yield self._frame(frame)
        except (av.FFmpegError, EOFError) as error:
            raise VideoError(f"{self.path}: cannot be decoded after frame {self.decoded}: {_reason(error)}") from None
        # A file that breaks off between two frames decodes without an error: the container's own
        # frame count tells (MP4, MOV). Matroska and WebM state none, so there such a file reads as
        # a shorter film.
        expected = self.info.frames
        if expected and self.decoded < expected:
            raise VideoError(f"{self.path}: is truncated: {self.decoded} of its {expected} frames could be decoded")

    def _frame(self, frame: Any) -> Frame:
        if self.decoded == 0:
            self.rotation = frame.rotation
        self.decoded += 1
        # The frame's own matrix and range, so that the writer's conversion back inverts this one.
        rgb = frame.to_ndarray(format="rgb24", src_color_range=frame.color_range)
        return Frame(rgb=rgb, pts=frame.pts, time_base=frame.time_base)

    def close(self) -> None:
        self._container.close()

    def __enter__(self) -> VideoReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _reason(error: BaseException) -> str:
    text = getattr(error, "strerror", None) or str(error) or type(error).__name__
    return text.strip().rstrip(".")


def output_muxer(path: Path) -> str:
    return _MUXERS.get(path.suffix.lower(), "mp4")


def _encoder_for(av: ModuleType, codec: str, muxer: str, supported: set[str]) -> str:
    """The output's encoder: the input's `codec` where this FFmpeg encodes it and the container
    holds it, else the first of the container's usual ones that does."""
    usual = _WEBM_CODECS if muxer == "webm" else ("libx264", "mpeg4")
    for name in (codec, *usual):
        try:
            encoder = av.Codec(name, "w")
        except (av.FFmpegError, ValueError):  # no encoder of that name in this FFmpeg
            continue
        if encoder.name in supported:
            return encoder.name
    raise VideoError(f"no video encoder of this FFmpeg can write {muxer}", "use another --format")


def _pix_fmt_for(av: ModuleType, encoder: str, source: str | None) -> str:
    formats = [f.name for f in (av.Codec(encoder, "w").video_formats or ())]
    colorless = source is None or source.startswith(("gray", "ya", "mono", "pal"))
    if not colorless and source in formats:
        return source
    for name in ("yuv420p", "yuvj420p", "yuv422p10le", "yuv444p"):
        if name in formats:
            return name
    return formats[0] if formats else "yuv420p"


def encoder_options(encoder: str, quality: int, *, max_bit_rate: int | None = None) -> dict[str, str]:
    """FFmpeg options for `encoder` at `quality` 1-100 (95: about visually lossless, as for JPEG;
    lower is smaller), the bit rate capped at `max_bit_rate` (bits/s; None: no cap).

    x264 and x265 take a CRF of 18 at 95, 6 steps higher per 15 of quality (x264's scale doubles
    the bit rate every 6 steps); VP9 and SVT-AV1 a CRF 13 steps higher on their 0-63 scale
    (libvpx's guide puts CRF 31 about where x264's 23 is at 1080p); MPEG-4 and MJPEG a qscale, or
    the cap itself as their bit rate.
    """
    crf = 18 + (95 - quality) * 0.4
    cap = {} if not max_bit_rate else {"maxrate": str(max_bit_rate), "bufsize": str(2 * max_bit_rate)}
    if encoder in ("libx264", "libx265"):
        return {"crf": f"{min(max(crf, 0), 51):.0f}", **cap}
    if encoder in ("libvpx-vp9", "libvpx", "libsvtav1"):
        # libvpx's constrained quality: the CRF, with b as the ceiling (0: none).
        return {"crf": f"{min(max(crf + 13, 4), 63):.0f}", "b": str(max_bit_rate or 0)}
    if max_bit_rate:
        return {"b": str(max_bit_rate)}
    if encoder in ("mpeg4", "mjpeg"):
        scale = f"{min(max(2 + (95 - quality) * 0.3, 1), 31):.0f}"
        return {"qmin": scale, "qmax": scale}  # a constant quantizer: their qscale as FFmpeg's CLI sets it
    return {}


class VideoWriter:
    """The output video, written to a temporary file beside `path` and renamed when `finish()`ed.

    Any exception (Ctrl-C included) inside its `with` block removes the temporary file; the target
    is then as it was before.
    """

    def __init__(self, path: Path, reader: VideoReader, *, quality: int | None = None) -> None:
        self.path = path
        self.temp = path.with_name(f".{path.name}.{secrets.token_hex(6)}.tmp")
        self._av = av = import_av(path)
        self._reader = reader
        self._quality = quality
        muxer = output_muxer(path)
        try:
            self._container = av.open(str(self.temp), "w", format=muxer)
        except (av.FFmpegError, OSError) as error:
            raise VideoError(f"{path}: cannot be written: {_reason(error)}") from None
        self._video = None
        self._audio: dict[int, Any] = {}
        self._finished = False
        self.written = 0

    def _open_streams(self, first: Frame) -> None:
        """Add the streams once the first frame is known (its rotation and size)."""
        av, info, container = self._av, self._reader.info, self._container
        encoder = _encoder_for(av, info.codec, container.format.name, set(container.supported_codecs))
        stream = container.add_stream(encoder, rate=info.rate)
        height, width = first.rgb.shape[:2]
        stream.width, stream.height = width, height
        stream.pix_fmt = _pix_fmt_for(av, encoder, info.pix_fmt)
        context = stream.codec_context
        # The input's time base, so every frame keeps its own timestamp exactly (VFR included).
        stream.time_base = context.time_base = info.time_base
        context.colorspace, context.color_range = info.colorspace, info.color_range
        context.color_primaries, context.color_trc = info.color_primaries, info.color_trc
        # By default quality 95, at no more than RATE_HEADROOM times the input's bit rate: a gray
        # film spends almost no bits on chroma, its colorized copy needs some.
        cap = None if self._quality is not None or not info.bit_rate else round(info.bit_rate * RATE_HEADROOM)
        context.options = encoder_options(encoder, 95 if self._quality is None else self._quality, max_bit_rate=cap)
        context.thread_type = "AUTO"
        if self._reader.rotation:
            stream.set_display_rotation(self._reader.rotation)
        for key, value in self._reader.video_metadata.items():
            if key.lower() not in _OWN_TAGS and not key.upper().startswith("DURATION") and key != "rotate":
                stream.metadata[key] = value
        for source in self._reader.audio:
            self._audio[source.index] = container.add_stream_from_template(source)
        for key, value in self._reader.metadata.items():
            if key.lower() not in _OWN_TAGS:
                container.metadata[key] = value
        chapters = self._reader.chapters()
        if chapters:
            container.set_chapters(chapters)
        self._video = stream
        self._frame_kwargs = {"dst_color_range": info.color_range}
        if info.colorspace not in (2,):  # 2: unspecified, swscale's default (BT.601) both ways
            self._frame_kwargs["dst_colorspace"] = info.colorspace

    def write(self, frame: Frame, rgb: np.ndarray) -> None:
        """Encode `rgb` (H, W, 3) uint8 with `frame`'s timestamp."""
        if self._video is None:
            self._open_streams(frame)
        assert self._video is not None
        if rgb.shape[:2] != (self._video.height, self._video.width):
            raise VideoError(f"{self._reader.path}: its frame size changes mid-stream, which recolor does not handle")
        av = self._av
        out = av.VideoFrame.from_ndarray(np.ascontiguousarray(rgb), format="rgb24")
        out = out.reformat(format=self._video.pix_fmt, **self._frame_kwargs)
        out.pts, out.time_base = frame.pts, frame.time_base
        self._mux(self._video.encode(out))
        self.written += 1

    def copy(self, packet: Any) -> None:
        """Mux an audio packet of the input as it is."""
        if self._video is None:
            raise RuntimeError("copy() before the first frame: the caller holds audio until then")
        packet.stream = self._audio[packet.stream.index]
        self._mux([packet])

    def _mux(self, packets: list[Any]) -> None:
        try:
            self._container.mux(packets)
        except self._av.FFmpegError as error:
            raise VideoError(f"{self.path}: cannot be written: {_reason(error)}",
                             "try --format same" if self.path.suffix.lower() != self._reader.path.suffix.lower()
                             else None) from None

    def finish(self) -> None:
        """Flush the encoder, close the file, make it durable and rename it onto the target."""
        if self._video is None:
            raise VideoError(f"{self._reader.path}: holds no frame that could be decoded")
        self._mux(self._video.encode(None))
        self._container.close()
        with open(self.temp, "rb+") as file:
            os.fsync(file.fileno())
        os.replace(self.temp, self.path)
        self._finished = True

    def abort(self) -> None:
        try:
            self._container.close()
        except self._av.FFmpegError:
            pass  # a file being thrown away; its trailer is of no interest
        self.temp.unlink(missing_ok=True)

    def __enter__(self) -> VideoWriter:
        return self

    def __exit__(self, kind: type | None, *exc: object) -> None:
        if kind is not None or not self._finished:
            self.abort()
