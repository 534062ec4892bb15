"""Decoding image files of any format, size and mode into RGB arrays of the model's input size."""

from __future__ import annotations

import os
import threading
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from convlens.ml.data.confined import open_confined
from convlens.ml.errors import FileRefused, ImageReadError
from convlens.ml.settings import settings

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".webp", ".gif", ".tif", ".tiff"}


def file_paths(root: Path) -> list[str]:
    """Every entry under root that is not a folder, recursively, as path strings in a stable (sorted) order:
    regular files, and also what cannot be read (a FIFO, a device, a symlink leaving root, a symlinked folder),
    so that each gets its row with the reason when it is opened (open_confined). Symlinked folders are not
    entered (no loops, no file listed twice). Directory entries' own types spare a stat per file."""
    found: list[str] = []

    def walk(folder: str) -> None:
        with os.scandir(folder) as entries:
            for entry in entries:
                if entry.is_dir(follow_symlinks=False):
                    walk(entry.path)
                else:
                    found.append(entry.path)

    walk(str(root))
    return sorted(found, key=path_order)


def list_files(root: Path) -> list[Path]:
    """file_paths as Paths."""
    return list(map(Path, file_paths(root)))


def path_order(path: str | os.PathLike[str]) -> str:
    """Path order (component by component) as a plain string key: the separator becomes NUL, which sorts below
    every character a name can hold. One string per path instead of a comparison per pair in Python."""
    return os.fspath(path).replace(os.sep, "\0")


# Larger images are refused before decoding: a 1 MB PNG can hold 400 megapixels (a decompression bomb).
MAX_PIXELS = 64_000_000


class PixelBudget:
    """Megapixels being decoded at once in this process: a decoded image costs about 7 bytes a pixel at its
    peak (PIL's 4-byte RGB plus the copies made from it), so a few large images decoded by parallel threads
    or requests would otherwise take gigabytes. An image over the whole budget waits until it runs alone."""

    def __init__(self, pixels: int) -> None:
        self.limit, self.used = pixels, 0
        self.cond = threading.Condition()

    @contextmanager
    def hold(self, pixels: int) -> Iterator[None]:
        pixels = min(pixels, self.limit)
        with self.cond:
            self.cond.wait_for(lambda: self.used + pixels <= self.limit)
            self.used += pixels
        try:
            yield
        finally:
            with self.cond:
                self.used -= pixels
                self.cond.notify_all()


budget = PixelBudget(int(settings().decode_megapixels * 1_000_000))


def _rgb(img: Image.Image) -> Image.Image:
    if img.mode in ("RGBA", "LA", "P", "PA"):
        # Composite transparent pixels on white instead of letting them turn black.
        rgba = img.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return img if img.mode == "RGB" else img.convert("RGB")


@contextmanager
def _reasons(name: str) -> Iterator[None]:
    """PIL's and the OS's errors while decoding, as the one-line reason a row shows."""
    try:
        yield
    except Image.DecompressionBombError as exc:
        raise ImageReadError(name, f"image too large: {exc}") from exc
    except UnidentifiedImageError as exc:
        raise ImageReadError(name, "not a readable image") from exc
    except (OSError, ValueError, SyntaxError) as exc:
        raise ImageReadError(name, f"corrupt image: {exc}") from exc


@contextmanager
def decoded(path: str | os.PathLike[str], within: str | os.PathLike[str] | None = None,
            max_pixels: int = MAX_PIXELS, draft: tuple[int, int] | None = None) -> Iterator[Image.Image]:
    """The image at path as an RGB PIL image, decoded under the process's pixel budget, which it holds until
    the with-block ends (make smaller copies inside it). Only a regular file under `within` (when given) is
    opened (open_confined). `draft`: a size the caller will shrink to (JPEGs then decode at 1/2 to 1/8 scale)."""
    name = os.fspath(path)
    try:
        fd = open_confined(path, within)
    except FileRefused as exc:
        raise ImageReadError(name, exc.reason) from None
    with os.fdopen(fd, "rb") as fh:
        with _reasons(name):
            img = Image.open(fh)
        with img:
            with _reasons(name):
                if draft is not None:
                    img.draft("RGB", draft)
            if img.width * img.height > max_pixels:
                raise ImageReadError(name, f"image too large: {img.width}x{img.height} pixels, over the limit of "
                                           f"{max_pixels:,}")
            with budget.hold(img.width * img.height):
                with _reasons(name):
                    img.load()
                    rgb = _rgb(img)
                yield rgb


def decode_rgb(path: Path, within: Path | None = None) -> np.ndarray:
    """The image at path as uint8 RGB (H, W, 3) at its original resolution; within: see decoded."""
    with decoded(path, within) as img:
        return np.asarray(img)


def fit_pixels(img: Image.Image, pixels: int) -> Image.Image:
    """img scaled down (aspect kept) to at most `pixels` pixels; unchanged when it has no more."""
    if img.width * img.height <= pixels:
        return img
    scale = (pixels / (img.width * img.height)) ** 0.5
    return img.resize((max(1, int(img.width * scale)), max(1, int(img.height * scale))), Image.Resampling.BILINEAR)


def resize(rgb: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    if rgb.shape[:2] == size:
        return rgb
    return np.asarray(Image.fromarray(rgb).resize((size[1], size[0]), Image.Resampling.BILINEAR))


def resize_all(images: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """A stack of uint8 RGB images at (height, width); the same array when they already are."""
    if images.shape[1:3] == tuple(size):
        return images
    return np.stack([resize(im, tuple(size)) for im in images])


@dataclass
class DecodedBatch:
    paths: list[Path]
    images: np.ndarray  # uint8 (n, H, W, 3) at model size
    errors: list[tuple[Path, str]]


def decode_batch(paths: Iterable[Path], size: tuple[int, int], within: Path | None = None) -> DecodedBatch:
    ok: list[Path] = []
    images: list[np.ndarray] = []
    errors: list[tuple[Path, str]] = []
    for path in paths:
        try:
            images.append(resize(decode_rgb(path, within), size))
            ok.append(path)
        except ImageReadError as exc:
            errors.append((path, exc.reason))
    array = np.stack(images) if images else np.zeros((0, *size, 3), np.uint8)
    return DecodedBatch(ok, array, errors)
