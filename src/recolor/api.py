"""The Python API: colorize images from code, with the engine and the pixel math of `recolor apply`.

    import recolor

    model = recolor.load_model("progan")          # built-in name, weights or run folder, Hub id
    colored = model.colorize(Image.open("old.jpg"))  # PIL in, PIL out; numpy in, numpy out
    colored = recolor.colorize(array, model="progan")  # one-off: loads (and keeps) the model

An image goes through what `recolor apply` does to a file once it is read: shrunk to the render size,
its L through the network, the ab upsampled and joined with the image's own full-resolution L. So
`model.colorize(Image.open(path))` gives the pixels `recolor apply path` writes for an sRGB file
without an EXIF orientation (a file read by `recolor apply` is also turned upright and converted
from its ICC profile; `recolor.io.read.read_image(path)` does that here too, and `colorize` takes
its `Photo`). docs/api.md has the details.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import TYPE_CHECKING, overload

import numpy as np

from recolor.apply.join import UPSAMPLE_MODES, join, network_lightness
from recolor.apply.pipeline import render_shape
from recolor.engine.choice import open_engine
from recolor.errors import UsageError
from recolor.hub.registry import DEFAULT_MODEL
from recolor.io.photo import Photo, looks_gray

if TYPE_CHECKING:
    from PIL import Image

    from recolor.engine.choice import Engine


class Model:
    """A loaded colorizer: `colorize` takes a PIL image, a uint8 / uint16 numpy array or a `Photo`.

    `render_size`: the network's long side in pixels (256, what the built-ins are trained at);
    `upsample`: "bilinear" or "guided"; `saturation`: chroma gain (1: as predicted, 0: gray). The
    defaults are `recolor apply`'s.
    """

    def __init__(self, engine: Engine, *, name: str, render_size: int = 256) -> None:
        render_shape(render_size, render_size, render_size)  # a bad size is a UsageError now, not per image
        self.engine = engine
        self.name = name
        self.render_size = render_size

    def __repr__(self) -> str:
        return (f"Model({self.name!r}, engine={self.engine.name!r}, device={self.engine.device!r}, "
                f"precision={self.engine.precision!r})")

    @overload
    def colorize(self, image: Image.Image, *, saturation: float = ..., upsample: str = ...) -> Image.Image: ...

    @overload
    def colorize(self, image: np.ndarray, *, saturation: float = ..., upsample: str = ...) -> np.ndarray: ...

    @overload
    def colorize(self, image: Photo, *, saturation: float = ..., upsample: str = ...) -> np.ndarray: ...

    def colorize(self, image: Image.Image | np.ndarray | Photo, *, saturation: float = 1.0,
                 upsample: str = "bilinear") -> Image.Image | np.ndarray:
        """The image in color, at its full size, of the same kind as given.

        - A PIL image, any mode -> an RGB image (RGBA when it had alpha, which is kept). 16-bit gray
          (I;16) is colorized at 16 bits and returned at 8, since Pillow has no 16-bit RGB mode.
        - A numpy array, uint8 or uint16, (H, W) gray, (H, W, 3) RGB or (H, W, 4) RGBA -> (H, W, 3)
          (or (H, W, 4)) of the same dtype.
        - A `Photo` (`recolor.io.read.read_image`) -> its (H, W, 3) result, uint8 or uint16 by its depth.

        An image already in color is recolored from its lightness alone.
        """
        if upsample not in UPSAMPLE_MODES:
            raise UsageError(f"unknown upsampling {upsample!r}", f"use one of {', '.join(UPSAMPLE_MODES)}")
        if isinstance(image, Photo):
            return self._colorize_photo(image, saturation=saturation, upsample=upsample)
        if isinstance(image, np.ndarray):
            photo = _photo_from_array(image)
            rgb = self._colorize_photo(photo, saturation=saturation, upsample=upsample)
            return rgb if photo.alpha is None else np.dstack([rgb, photo.alpha])
        from PIL import Image

        if isinstance(image, Image.Image):
            from recolor.io.read import photo_from_image

            photo = photo_from_image(image, icc=image.info.get("icc_profile") or None)
            rgb = self._colorize_photo(photo, saturation=saturation, upsample=upsample)
            if rgb.dtype == np.uint16:
                rgb = ((rgb.astype(np.uint32) + 128) // 257).astype(np.uint8)
            result = Image.fromarray(rgb)
            if photo.alpha is not None:
                alpha = photo.alpha if photo.alpha.dtype == np.uint8 else (photo.alpha // 257).astype(np.uint8)
                result.putalpha(Image.fromarray(alpha))
            return result
        raise TypeError(f"colorize takes a PIL image, a numpy array or a Photo, not {type(image).__name__}")

    def _colorize_photo(self, photo: Photo, *, saturation: float, upsample: str) -> np.ndarray:
        shape = render_shape(*photo.size, self.render_size)
        lightness = network_lightness(photo, shape)
        ab = self.engine.ab(lightness[None])[0]
        return join(photo, ab, lightness, upsample=upsample, saturation=saturation)


def _photo_from_array(array: np.ndarray) -> Photo:
    if array.dtype not in (np.uint8, np.uint16):
        raise TypeError(f"colorize takes uint8 or uint16 arrays, not {array.dtype} (scale floats in [0, 1] by 255 "
                        "and round to uint8 first)")
    alpha = None
    if array.ndim == 2:
        rgb, gray = np.repeat(array[..., None], 3, axis=2), True
    elif array.ndim == 3 and array.shape[2] in (3, 4):
        rgb, alpha = np.ascontiguousarray(array[..., :3]), (np.ascontiguousarray(array[..., 3])
                                                              if array.shape[2] == 4 else None)
        gray = looks_gray(rgb)
    else:
        raise ValueError(f"colorize takes (H, W), (H, W, 3) or (H, W, 4) arrays, not {array.shape}")
    return Photo(path=None, rgb=rgb, alpha=alpha, format="PNG", mode="L" if array.ndim == 2 else "RGB",
                 bit_depth=16 if array.dtype == np.uint16 else 8, icc_profile=None, exif=None, dpi=None,
                 is_grayscale=gray)


def load_model(model: str = DEFAULT_MODEL, *, device: str = "auto", engine: str = "auto", precision: str = "auto",
               render_size: int = 256, offline: bool | None = None,
               notify: Callable[[str], None] | None = None) -> Model:
    """The colorizer `model` names: a built-in name ("gan", "wgan", "progan"), a weights or run folder,
    or a Hugging Face Hub id ("org/name[@revision]"); on `device` ("auto", "cpu", "cuda", "cuda:N",
    "mps") through `engine` ("auto": OpenVINO on the CPU, torch on a GPU), as `recolor apply` runs it.

    Raises `recolor.errors.RecolorError` subclasses (each with `.cause` and `.fix`) for names that do
    not exist, models that cannot be loaded and devices that are not there. `notify` gets one line
    when an OpenVINO export has to be made for a folder that has none (default: a warning).
    """
    if notify is None:
        import warnings

        def notify(line: str) -> None:
            warnings.warn(line, stacklevel=3)

    return Model(open_engine(model, engine=engine, device=device, precision=precision, offline=offline,
                             notify=notify), name=model, render_size=render_size)


@functools.lru_cache(maxsize=2)
def _cached(model: str, device: str) -> Model:
    return load_model(model, device=device)


def colorize(image: Image.Image | np.ndarray | Photo, *, model: str = DEFAULT_MODEL, device: str = "auto",
             saturation: float = 1.0) -> Image.Image | np.ndarray:
    """`load_model(model, device=device).colorize(image, saturation=saturation)`, the model kept for the
    next call with the same `model` and `device` (the last two are kept)."""
    return _cached(model, device).colorize(image, saturation=saturation)
