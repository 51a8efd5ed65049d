"""Checks of a delivered result before anything is credited: the task's outputs are exactly the
files it should produce, each a whole image of the job's format at the promised size; and the
comparisons behind spot checks by replication (render crops, upscale tiles).

Plain functions: no database, no request. The dispatcher calls them at `complete` and when a
verification task comes back.

How a spot check works, and why the thresholds hold (measured by `bench/verify_calibration.py`
with Debian Blender 3.4.1, Cycles on the CPU; the figures are beside `CROP_FLOORS` below):
Cycles seeds each pixel from the scene's seed, the sample number and the pixel's position in the
*full* frame, so a border render of a window ("crop") gives the very samples the full render gave
there. What differs is Blender's dither when it writes 8 bits: it depends on the position in the
written buffer, so a crop's pixels can be 1-2 levels off the frame's (never more at dither 1.0).
The comparison therefore tolerates a couple of levels and nothing like a different picture.
"""

from __future__ import annotations

import math
import random
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np
from PIL import Image, UnidentifiedImageError

from tray_client.runners.blender import FORMATS, output_path
from tray_client.runners.realesrgan import output_name as upscale_output_name

# A render or upscale bigger than this is refused before its pixels are decoded: Blender allows
# 65536 px a side, but 16k x 16k RGBA float is already 4 GiB in the portal's memory.
MAX_OUTPUT_PIXELS = 16384 * 16384

# Pillow's own names for the formats Blender writes (`-F`), as FORMATS keys them.
_PILLOW_FORMAT = {"PNG": "PNG", "JPEG": "JPEG"}

# Blender's RenderData.mode bits (DNA_scene_types.h): "Render Region" and "Crop to Render Region";
# RenderData.scemode bits: "Sequencer" and "Compositing" post-processing (checked on saved files).
_R_BORDER = 1 << 9
_R_CROP = 1 << 11
_R_DOSEQ = 1 << 0
_R_DOCOMP = 1 << 6


class InvalidOutput(ValueError):
    """A delivered file breaks a rule; `name` is the file, `rule` says what is wrong in words the
    worker's owner can act on. The API answers it as 4xx {"error": "invalid_output"}."""

    def __init__(self, name: str, rule: str):
        super().__init__(f"{name}: {rule}")
        self.name = name
        self.rule = rule


class UnreadableBlend(ValueError):
    """The .blend cannot be read without Blender, so the portal cannot know the frame size."""


# --- the scene's render settings, read from the .blend -------------------------------------------

@dataclass(frozen=True)
class RenderSettings:
    """What a .blend's active scene says about the size of a rendered frame."""

    scene: str
    resolution_x: int
    resolution_y: int
    percent: int  # the file's own resolution %; a job's resolution_percent replaces it
    engine: str
    frame_start: int
    frame_end: int
    use_border: bool = False
    use_crop_to_border: bool = False
    border: tuple[float, float, float, float] = (0.0, 1.0, 0.0, 1.0)  # min_x, max_x, min_y, max_y
    uses_compositor: bool = False  # compositing nodes on and enabled for the render
    uses_sequencer: bool = False  # sequencer strips that replace or overlay the render

    @property
    def crops_to_border(self) -> bool:
        """The creator's own render region, cropped: frames are smaller than the resolution says."""
        return self.use_border and self.use_crop_to_border

    @property
    def spot_checkable(self) -> bool:
        """Whether a crop re-render can match the delivered frame. Not with the creator's own
        render region (ours would replace it), nor with compositing or sequencer strips: a blur or
        glare node sees the whole frame, a crop only itself."""
        return not (self.use_border or self.uses_compositor or self.uses_sequencer)


def read_render_settings(blend_path: str | Path) -> RenderSettings:
    """The active scene's resolution and region from a .blend (plain, gzip or zstd), without
    Blender. Raises UnreadableBlend when the file is not a .blend BAT can parse."""
    from blender_asset_tracer import blendfile

    path = Path(blend_path)
    try:
        with blendfile.BlendFile(path) as bfile:
            scene = _active_scene(bfile)
            if scene is None:
                raise UnreadableBlend(f"{path.name} has no scene to render")

            def r(*field):
                return scene[(b"r", *field)]

            mode, scemode = r(b"mode"), r(b"scemode")
            editing = scene.get_pointer(b"ed")
            strips = bool(editing is not None and editing[b"seqbase", b"first"])
            return RenderSettings(
                scene=scene.id_name[2:].decode("utf-8", "replace"),
                resolution_x=r(b"xsch"), resolution_y=r(b"ysch"), percent=r(b"size"),
                engine=r(b"engine").decode("ascii", "replace"),
                frame_start=r(b"sfra"), frame_end=r(b"efra"),
                use_border=bool(mode & _R_BORDER), use_crop_to_border=bool(mode & _R_CROP),
                border=tuple(float(r(b"border", k)) for k in (b"xmin", b"xmax", b"ymin", b"ymax")),
                uses_compositor=bool(scene[b"use_nodes"]) and bool(scemode & _R_DOCOMP),
                uses_sequencer=strips and bool(scemode & _R_DOSEQ),
            )
    except UnreadableBlend:
        raise
    except Exception as exc:  # an untrusted file can break the parser in any number of ways
        raise UnreadableBlend(f"{path.name} is not a .blend file the portal can read "
                              f"({type(exc).__name__}: {exc})"[:300]) from None


def _active_scene(bfile):
    # Blender renders the scene the file was saved with (FileGlobal.curscene); files written by
    # scripts may lack it, and then a lone scene is the only candidate.
    for glob in bfile.find_blocks_from_code(b"GLOB"):
        scene = glob.get_pointer(b"curscene")
        if scene is not None:
            return scene
    scenes = bfile.find_blocks_from_code(b"SC")
    return scenes[0] if scenes else None


def expected_render_size(settings: RenderSettings, resolution_percent: int) -> tuple[int, int]:
    """The size of a frame Blender writes for this scene at the job's resolution %.

    Blender's render init computes `winx = (size * xsch) / 100` in integers (35x22 for 97x61 at
    37%, checked against a real render), and with a cropped render region it writes
    `int(border.xmax * winx) - int(border.xmin * winx)` pixels, likewise for y."""
    width = settings.resolution_x * resolution_percent // 100
    height = settings.resolution_y * resolution_percent // 100
    if settings.crops_to_border:
        min_x, max_x, min_y, max_y = (np.float32(v) for v in settings.border)
        width = int(max_x * width) - int(min_x * width)
        height = int(max_y * height) - int(min_y * height)
    return width, height


# --- which files a task must deliver ---------------------------------------------------------------

def render_output_names(frames: Sequence[int], fmt: str) -> list[str]:
    """One file per frame, named the way the Worker App's render runner names it."""
    return [output_path(Path(), frame, fmt).name for frame in frames]


def upscale_output_names(image_name: str, scale: int) -> list[str]:
    """The one file an upscale task delivers for its input image."""
    return [upscale_output_name(image_name, scale)]


def upscaled_size(input_size: tuple[int, int], scale: int) -> tuple[int, int]:
    return input_size[0] * scale, input_size[1] * scale


def check_output_names(declared: Iterable[str], expected: Sequence[str]) -> None:
    """The declared outputs must be exactly the expected files: none missing, none extra, none
    twice. Raises InvalidOutput naming the first offending file."""
    declared = list(declared)
    seen: set[str] = set()
    for name in declared:
        if name in seen:
            raise InvalidOutput(name, "is declared twice")
        seen.add(name)
        if name not in expected:
            raise InvalidOutput(name, f"is not an output of this task (it delivers "
                                      f"{_listing(expected)})")
    for name in expected:
        if name not in seen:
            raise InvalidOutput(name, "is missing: the task must deliver it")


def _listing(names: Sequence[str]) -> str:
    return ", ".join(names[:5]) + (f" and {len(names) - 5} more" if len(names) > 5 else "")


# --- one file: the declared format, decoded in full, at the promised size -------------------------

def check_output_file(path: str | Path, *, fmt: str, expected_size: tuple[int, int],
                      name: str | None = None) -> None:
    """Raise InvalidOutput unless `path` decodes completely as `fmt` (Blender's name: PNG, JPEG,
    OPEN_EXR) at exactly `expected_size` (width, height).

    The size is read from the header and compared before any pixel is decoded, so a
    decompression bomb (a small file that claims a huge image) is refused without being opened."""
    path = Path(path)
    name = name or path.name
    if fmt not in FORMATS:
        raise ValueError(f"unknown output format {fmt!r}")
    width, height = expected_size
    if width < 1 or height < 1 or width * height > MAX_OUTPUT_PIXELS:
        raise InvalidOutput(name, f"a {width}x{height} image is beyond what the portal accepts")
    if not name.endswith("." + FORMATS[fmt]):
        raise InvalidOutput(name, f"must be named *.{FORMATS[fmt]} for a {fmt} job")
    if fmt == "OPEN_EXR":
        _check_exr(path, name, expected_size)
    else:
        _check_pillow(path, name, _PILLOW_FORMAT[fmt], expected_size)


def image_size(path: str | Path, name: str | None = None) -> tuple[int, int]:
    """(width, height) from an image's header (PNG, JPEG, EXR); InvalidOutput when it has none."""
    path = Path(path)
    try:
        with path.open("rb") as fp:
            magic = fp.read(4)
        if magic == b"\x76\x2f\x31\x01":  # the OpenEXR magic number
            import OpenEXR
            (x0, y0), (x1, y1) = OpenEXR.File(str(path), header_only=True).header()["dataWindow"]
            return int(x1 - x0 + 1), int(y1 - y0 + 1)
        with Image.open(path) as image:
            return image.size
    except Exception:  # any reader's complaint about junk
        raise InvalidOutput(name or path.name, "is not a readable image") from None


def _wrong_size(name: str, actual: tuple[int, int], expected: tuple[int, int]) -> InvalidOutput:
    return InvalidOutput(name, f"is {actual[0]}x{actual[1]} pixels; this task renders "
                               f"{expected[0]}x{expected[1]}")


def _check_pillow(path: Path, name: str, pillow_format: str, expected: tuple[int, int]) -> None:
    not_format = InvalidOutput(name, f"is not a readable {pillow_format} image")
    try:
        # formats=: a GIF renamed .png is refused here, not decoded by whatever plugin fits.
        with Image.open(path, formats=[pillow_format]) as image:
            if image.size != expected:
                raise _wrong_size(name, image.size, expected)
            image.verify()  # PNG: every chunk's CRC, so a flipped byte anywhere is caught
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path, formats=[pillow_format]) as image:
                image.load()  # the whole pixel stream: a truncated file fails here
    except InvalidOutput:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise InvalidOutput(name, "claims far more pixels than this task renders: refused as a "
                                  "decompression bomb") from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, EOFError):
        # SyntaxError is how Pillow's PNG reader reports a broken chunk.
        raise not_format from None


def _check_exr(path: Path, name: str, expected: tuple[int, int]) -> None:
    import OpenEXR

    not_exr = InvalidOutput(name, "is not a readable OpenEXR image")
    try:
        with path.open("rb") as f:
            if not OpenEXR.isOpenExrFile(path.as_posix()) or f.read(4) != b"\x76\x2f\x31\x01":
                raise not_exr
        header = OpenEXR.File(str(path), header_only=True)
        if len(header.parts) != 1:
            raise InvalidOutput(name, "must hold one image, not several parts")
        (x0, y0), (x1, y1) = (tuple(int(v) for v in corner) for corner in header.header()["dataWindow"])
        actual = (x1 - x0 + 1, y1 - y0 + 1)
        if actual != expected:
            raise _wrong_size(name, actual, expected)
        channels = _exr_rgb(OpenEXR.File(str(path)), name)  # every scanline: truncation fails here
    except InvalidOutput:
        raise
    except Exception:  # the bindings raise RuntimeError, ValueError... for a damaged file
        raise not_exr from None
    if channels.shape[:2] != (expected[1], expected[0]):
        raise _wrong_size(name, (channels.shape[1], channels.shape[0]), expected)


def _exr_rgb(exr, name: str) -> np.ndarray:
    """The R, G, B channels of an EXR as float32 (height, width, 3)."""
    channels = exr.channels()
    for packed in ("RGBA", "RGB"):
        if packed in channels:
            return np.asarray(channels[packed].pixels[..., :3], dtype=np.float32)
    if all(c in channels for c in "RGB"):
        return np.stack([np.asarray(channels[c].pixels, dtype=np.float32) for c in "RGB"], axis=-1)
    raise InvalidOutput(name, "has no R, G and B channels")


# --- comparing a re-rendered region with the delivered one ------------------------------------------

# The floors an honest crop clears and a tampered one does not, per delivered format; the
# measurements behind them are bench/verify_calibration.py's (table in its docstring).
# Measured over 60 frames of 12 scenes, 2 crops each (0 honest frames rejected):
# PNG: an honest crop differs from the frame by Blender's 8-bit dither only (<= 2 levels):
#   PSNR >= 51.6 dB (median 52.1), SSIM >= 0.993. Black, noise, another scene: <= 22.4 dB;
#   shifted by 3 px, flipped, another frame: every delivery caught. Another Cycles seed or a
#   quarter of the samples: per-crop PSNR median ~35 dB but up to 57 dB on a flat crop, so 44 and
#   46 of 50 deliveries caught. The floor sits ~6 dB under the lowest honest crop for a GPU
#   verifier's float differences (not measured: no GPU Blender on the test machines).
# OPEN_EXR: no dither, honest crops are bit-identical (100 dB); the PNG floor applies.
# JPEG: the delivered frame carries JPEG's block errors, which a crop (blocks elsewhere) cannot
#   reproduce; honest crops measured down to 30.6 dB / 0.916, so the floor only tells gross fakes
#   (black, noise, another scene: all caught; flipped 9/10) from the render. Another seed or
#   fewer samples pass a JPEG check most of the time.
CROP_FLOORS = {"PNG": (45.0, 0.98), "OPEN_EXR": (45.0, 0.98), "JPEG": (28.0, 0.85)}  # (dB, SSIM)
PSNR_CAP = 100.0  # identical images: a finite number a database and JSON can hold

# Upscale tiles: Real-ESRGAN on the CPU is deterministic (reruns bit-identical) and a padded tile's
# centre (margin 16 input px) matches the whole image's output at >= 63.7 dB / SSIM 0.9997
# (lanczos: identical); a bicubic resize passed off as Real-ESRGAN scores <= 49.2 dB / 0.995. Measured CPU against CPU;
# Real-ESRGAN on a Vulkan GPU computes in fp16, so the floor leaves ~12 dB under honest CPU tiles.
TILE_MIN_PSNR = 52.0  # dB
TILE_MIN_SSIM = 0.995


@dataclass(frozen=True)
class Crop:
    """A window of a frame to re-render: pixel columns x0..x1-1 and rows y0..y1-1 counted from the
    image's top-left, as Pillow and numpy count them."""

    x0: int
    y0: int
    x1: int
    y1: int
    frame_width: int
    frame_height: int

    @property
    def size(self) -> tuple[int, int]:
        return self.x1 - self.x0, self.y1 - self.y0

    @property
    def box(self) -> tuple[int, int, int, int]:
        """Pillow's (left, upper, right, lower)."""
        return self.x0, self.y0, self.x1, self.y1

    @property
    def border(self) -> dict[str, float]:
        """Blender's render region for this window: fractions of the frame, y from the bottom.

        Blender turns a region into pixels with `int(border * size)` in float32, so an edge put
        on a pixel boundary could land one pixel short; half a pixel in keeps it on the right one.
        """
        w, h = self.frame_width, self.frame_height
        # Rows from the top become rows from the bottom: image rows y0..y1-1 are Blender's
        # rows h-y1..h-y0-1.
        return {"min_x": _edge(self.x0, w), "max_x": _edge(self.x1, w),
                "min_y": _edge(h - self.y1, h), "max_y": _edge(h - self.y0, h)}


def _edge(pixel: int, size: int) -> float:
    if pixel <= 0:
        return 0.0
    if pixel >= size:
        return 1.0
    return (pixel + 0.5) / size


def crop_from_border(border: dict[str, float], frame_width: int, frame_height: int) -> Crop:
    """The pixel window Blender renders for a region: the inverse of Crop.border."""
    def px(value: float, size: int) -> int:
        return int(np.float32(value) * np.float32(size))
    bx0, bx1 = px(border["min_x"], frame_width), px(border["max_x"], frame_width)
    by0, by1 = px(border["min_y"], frame_height), px(border["max_y"], frame_height)
    return Crop(bx0, frame_height - by1, bx1, frame_height - by0, frame_width, frame_height)


CROP_MIN_SIDE = 16  # px: SSIM's 7x7 window needs room, and a few pixels prove little


def choose_crops(width: int, height: int, rng: random.Random, count: int = 2,
                 fraction: float = 1 / 16) -> list[Crop]:
    """`count` random windows of a width x height frame, each about `fraction` of its area and
    not overlapping where that fits. Two crops of 1/16 re-render 1/8 of a checked frame."""
    if width < 1 or height < 1:
        raise ValueError("a frame has at least one pixel")
    side = math.sqrt(fraction)
    cw = min(width, max(CROP_MIN_SIDE, round(width * side)))
    ch = min(height, max(CROP_MIN_SIDE, round(height * side)))
    crops: list[Crop] = []
    for _ in range(count):
        for attempt in range(20):
            x0, y0 = rng.randint(0, width - cw), rng.randint(0, height - ch)
            crop = Crop(x0, y0, x0 + cw, y0 + ch, width, height)
            if attempt == 19 or not any(_overlap(crop, c) for c in crops):
                break
        crops.append(crop)
    return crops


def _overlap(a: Crop, b: Crop) -> bool:
    return a.x0 < b.x1 and b.x0 < a.x1 and a.y0 < b.y1 and b.y0 < a.y1


@dataclass(frozen=True)
class CropScore:
    psnr: float  # dB, capped at PSNR_CAP
    ssim: float  # -1..1, 1 for identical


def compare_crop(delivered_image_path: str | Path, crop_image_path: str | Path, crop: Crop) -> CropScore:
    """Score a re-rendered crop against the same window of the delivered frame.

    Both are compared as RGB in 0..1: 8-bit files as they are, EXR after the same tone curve
    v/(1+v) on both (linear values have no top; the curve keeps highlights comparable without a
    colour-management pipeline). Alpha is left out: an opaque frame's alpha would match any fake."""
    delivered = load_rgb(delivered_image_path)
    if delivered.shape[:2] != (crop.frame_height, crop.frame_width):
        raise InvalidOutput(Path(delivered_image_path).name, "is not the size the crop was cut for")
    region = delivered[crop.y0:crop.y1, crop.x0:crop.x1]
    rendered = load_rgb(crop_image_path)
    if rendered.shape != region.shape:
        raise _wrong_size(Path(crop_image_path).name, (rendered.shape[1], rendered.shape[0]), crop.size)
    return score(region, rendered)


def crop_holds(crop_score: CropScore, fmt: str = "PNG") -> bool:
    """Whether a crop of a job delivered in `fmt` (Blender's name) matches the delivered frame."""
    min_psnr, min_ssim = CROP_FLOORS[fmt]
    return crop_score.psnr >= min_psnr and crop_score.ssim >= min_ssim


def score(expected: np.ndarray, actual: np.ndarray) -> CropScore:
    """PSNR and SSIM of two float RGB arrays in 0..1 (scikit-image's implementations)."""
    from skimage.metrics import peak_signal_noise_ratio, structural_similarity

    if float(np.mean((expected - actual) ** 2)) == 0.0:
        return CropScore(PSNR_CAP, 1.0)
    psnr = min(PSNR_CAP, float(peak_signal_noise_ratio(expected, actual, data_range=1.0)))
    win = min(7, *expected.shape[:2]) | 1  # SSIM's window must be odd and fit the image
    ssim = float(structural_similarity(expected, actual, data_range=1.0, channel_axis=2, win_size=win))
    return CropScore(psnr, ssim)


def load_rgb(path: str | Path) -> np.ndarray:
    """An image file as float32 RGB in 0..1, (height, width, 3): PNG/JPEG via Pillow (16-bit
    PNGs keep their precision), EXR via OpenEXR with the tone curve of compare_crop."""
    path = Path(path)
    with path.open("rb") as f:
        exr = f.read(4) == b"\x76\x2f\x31\x01"
    if exr:
        import OpenEXR
        linear = np.clip(_exr_rgb(OpenEXR.File(str(path)), path.name), 0.0, None)
        linear = np.nan_to_num(linear, nan=0.0, posinf=1e6)
        return (linear / (1.0 + linear)).astype(np.float32)
    with Image.open(path) as image:
        if image.mode in ("I;16", "I;16B", "I"):
            return np.repeat(np.asarray(image, dtype=np.float32)[..., None] / 65535.0, 3, axis=2)
        return np.asarray(image.convert("RGB"), dtype=np.float32) / 255.0


# --- upscale tiles ----------------------------------------------------------------------------------

@dataclass(frozen=True)
class Tile:
    """A window of an upscale task's input to upscale again. The verifier upscales the padded
    window; only its centre (x0..x1, y0..y1, input pixels from the top-left) is compared, because
    a network sees past a tile's edge and the outermost pixels legitimately differ."""

    x0: int
    y0: int
    x1: int
    y1: int
    pad_x0: int
    pad_y0: int
    pad_x1: int
    pad_y1: int
    scale: int

    @property
    def input_box(self) -> tuple[int, int, int, int]:
        """The padded window to cut from the input (Pillow box)."""
        return self.pad_x0, self.pad_y0, self.pad_x1, self.pad_y1

    @property
    def output_box(self) -> tuple[int, int, int, int]:
        """The centre, in the delivered output's pixels."""
        s = self.scale
        return self.x0 * s, self.y0 * s, self.x1 * s, self.y1 * s

    @property
    def centre_in_tile_box(self) -> tuple[int, int, int, int]:
        """The centre, in the re-upscaled tile's pixels."""
        s = self.scale
        return ((self.x0 - self.pad_x0) * s, (self.y0 - self.pad_y0) * s,
                (self.x1 - self.pad_x0) * s, (self.y1 - self.pad_y0) * s)

    @property
    def tile_size(self) -> tuple[int, int]:
        """The size of the upscaled tile the verifier must return."""
        return (self.pad_x1 - self.pad_x0) * self.scale, (self.pad_y1 - self.pad_y0) * self.scale


TILE_MARGIN = 16  # input px excluded on each side: a 3x3-conv network sees a few pixels past a tile


def choose_tile(width: int, height: int, rng: random.Random, scale: int, size: int = 64,
                margin: int = TILE_MARGIN) -> Tile:
    """A random size x size window of a width x height input, padded by `margin` on every side
    that has room. A small image is compared whole."""
    cw, ch = min(size, width), min(size, height)
    x0, y0 = rng.randint(0, width - cw), rng.randint(0, height - ch)
    return Tile(x0, y0, x0 + cw, y0 + ch, max(0, x0 - margin), max(0, y0 - margin),
                min(width, x0 + cw + margin), min(height, y0 + ch + margin), scale)


def cut_tile(input_image_path: str | Path, tile: Tile, dest: str | Path) -> Path:
    """Write the padded window of the input as a lossless PNG: the verification task's input."""
    with Image.open(input_image_path) as image:
        window = image.crop(tile.input_box)
        if window.mode not in ("1", "L", "LA", "P", "RGB", "RGBA", "I", "I;16"):
            window = window.convert("RGB")  # CMYK JPEG: PNG cannot hold it; the upscaler sees RGB
        window.save(dest, "PNG")
    return Path(dest)


def compare_tile(delivered_output_path: str | Path, tile_output_path: str | Path, tile: Tile) -> CropScore:
    """Score the re-upscaled tile's centre against the same region of the delivered output."""
    delivered = load_rgb(delivered_output_path)
    x0, y0, x1, y1 = tile.output_box
    region = delivered[y0:y1, x0:x1]
    if region.shape[:2] != (y1 - y0, x1 - x0):
        raise InvalidOutput(Path(delivered_output_path).name, "is not the size the tile was cut for")
    upscaled = load_rgb(tile_output_path)
    if upscaled.shape[:2] != (tile.tile_size[1], tile.tile_size[0]):
        raise _wrong_size(Path(tile_output_path).name, (upscaled.shape[1], upscaled.shape[0]),
                          tile.tile_size)
    cx0, cy0, cx1, cy1 = tile.centre_in_tile_box
    return score(region, upscaled[cy0:cy1, cx0:cx1])


def tile_holds(tile_score: CropScore) -> bool:
    return tile_score.psnr >= TILE_MIN_PSNR and tile_score.ssim >= TILE_MIN_SSIM
