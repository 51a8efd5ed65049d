"""Run as a child process by services/scenes.py: reads one .blend of an uploaded project with
blender-asset-tracer and prints, as one JSON line, its render settings and the files it depends on.

It is a separate script (stdlib and BAT only, no portal imports) because the file is untrusted: the
parent gives it a time limit and it limits its own memory, CPU and file size before touching the file,
so a hostile .blend can at worst kill this process, never hang or exhaust the portal. Libraries are
followed only inside the project folder: a path to the portal's own disk is listed, never opened.

    python -I blend_reader.py ROOT MAIN MAX_BYTES
"""

import json
import os
import sys
from pathlib import Path

# Blender's DNA: Object.type of a camera, ImageFormatData.imtype of the formats workers write
# (DNA_object_types.h, DNA_scene_types.h), and the Cycles samples default when a file never set it.
OB_CAMERA = 11
IMTYPES = {17: "PNG", 4: "JPEG", 23: "OPEN_EXR", 28: "OPEN_EXR_MULTILAYER", 0: "TARGA", 14: "TARGA_RAW",
           20: "BMP", 21: "HDR", 22: "TIFF", 24: "FFMPEG", 26: "CINEON", 27: "DPX", 29: "DDS", 30: "JPEG2000",
           1: "IRIS", 34: "PSD", 35: "WEBP"}
CYCLES_DEFAULT_SAMPLES = 4096
IDP_INT, IDP_GROUP = 1, 6
MAX_DEPENDENCIES = 500
MAX_CAMERAS = 50
KINDS = {b"IM": "image", b"LI": "library", b"MC": "movie clip", b"SO": "sound", b"VF": "font",
         b"CF": "cache file", b"VO": "volume", b"ME": "mesh data", b"OB": "cache", b"SC": "sequencer strip"}


def limit_self(max_bytes: int) -> None:
    """Caps this process before it reads anything: address space, CPU seconds, size of any file it
    writes (BAT decompresses a compressed .blend into a temp file: a zstd bomb stops here)."""
    try:
        import resource
    except ImportError:  # Windows: the parent's time limit still holds
        return
    memory = max(1024 * 1024 * 1024, 2 * max_bytes)
    for limit, value in ((resource.RLIMIT_AS, memory), (resource.RLIMIT_CPU, 60),
                         (resource.RLIMIT_FSIZE, max_bytes), (resource.RLIMIT_CORE, 0)):
        try:
            resource.setrlimit(limit, (value, value))
        except (ValueError, OSError):
            pass


def _text(value) -> str:
    if isinstance(value, bytes):
        value = value.split(b"\0", 1)[0].decode("utf-8", "replace")
    return str(value)


def _active_scene(bfile):
    # Blender renders the scene the file was saved with; a file written by a script may lack it.
    for glob in bfile.find_blocks_from_code(b"GLOB"):
        scene = glob.get_pointer(b"curscene")
        if scene is not None:
            return scene
    scenes = bfile.find_blocks_from_code(b"SC")
    return scenes[0] if scenes else None


def _id_property(block, *names):
    """An integer ID property (e.g. scene.cycles.samples is the 'samples' int of group 'cycles')."""
    prop = block.get_pointer((b"id", b"properties"))
    if prop is None:
        return None
    for depth, name in enumerate(names):
        prop = prop.get_pointer((b"data", b"group", b"first"))
        seen = 0
        while prop is not None and _text(prop[b"name"]) != name:
            seen += 1
            if seen > 10_000:  # a hostile list that loops
                return None
            prop = prop.get_pointer(b"next")
        if prop is None:
            return None
        wanted = IDP_GROUP if depth < len(names) - 1 else IDP_INT
        if prop[b"type"] != wanted:
            return None
    return int(prop[b"data", b"val"])


def read_settings(bfile) -> dict:
    scene = _active_scene(bfile)
    if scene is None:
        raise ValueError("the file has no scene to render")

    def r(*field):
        return scene[(b"r", *field)]

    engine = _text(r(b"engine"))
    if engine == "CYCLES":
        samples = _id_property(scene, "cycles", "samples") or CYCLES_DEFAULT_SAMPLES
    else:
        samples = int(scene[b"eevee", b"taa_render_samples"])
    camera = scene.get_pointer(b"camera")
    cameras = sorted({_text(ob.id_name)[2:] for ob in bfile.find_blocks_from_code(b"OB")
                      if ob[b"type"] == OB_CAMERA})
    imtype = int(r(b"im_format", b"imtype"))
    return {
        "scene": _text(scene.id_name)[2:],
        "frame_start": int(r(b"sfra")), "frame_end": int(r(b"efra")), "frame_step": int(r(b"frame_step")),
        "resolution_x": int(r(b"xsch")), "resolution_y": int(r(b"ysch")), "resolution_percent": int(r(b"size")),
        "engine": engine, "samples": int(samples),
        "format": IMTYPES.get(imtype, f"type {imtype}"),
        "camera": _text(camera.id_name)[2:] if camera is not None else None,
        "cameras": cameras[:MAX_CAMERAS],
    }


def _inside(path: Path, root: Path) -> bool:
    try:
        path.relative_to(root)
    except ValueError:
        return False
    return True


def read_dependencies(main: Path, root: Path) -> tuple[list[dict], bool]:
    """Every external file the scene uses (its libraries' files too), as the project sees it."""
    from blender_asset_tracer import bpathlib, trace
    from blender_asset_tracer.trace import blocks2assets, file2blocks

    class ConfinedBlockIterator(file2blocks.BlockIterator):
        # trace.deps would open any library path it finds, the portal's own disk included; this one
        # expands only libraries inside the project (those outside are still reported, as missing).
        def _visit_linked_blocks(self, blocks_per_lib):
            inside = {lib: blocks for lib, blocks in blocks_per_lib.items()
                      if _inside(bpathlib.make_absolute(lib.to_path()), root)}
            yield from super()._visit_linked_blocks(inside)

    # trace.deps(), with the confined iterator in place of its own.
    iterator = ConfinedBlockIterator()
    bfile = iterator.open_blendfile(main)
    found, seen, truncated = [], set(), False
    for block in trace.asset_holding_blocks(iterator.iter_blocks(bfile)):
        for usage in blocks2assets.iter_assets(block):
            written = _text(bytes(usage.asset_path))
            if not written or written == "<builtin>":
                continue
            absolute = usage.asset_path.is_absolute()
            full = None if absolute else bpathlib.make_absolute(usage.abspath)
            if full is not None and _inside(full, root):
                path, present = full.relative_to(root).as_posix(), _present(full, usage.is_sequence)
            else:
                path, present = written, False
            key = (path, usage.is_sequence)
            if key in seen or path == main.relative_to(root).as_posix():
                continue
            seen.add(key)
            if len(found) >= MAX_DEPENDENCIES:
                truncated = True
                break
            found.append({"path": path, "found": present, "absolute": absolute,
                          "outside": not absolute and full is not None and not _inside(full, root),
                          "kind": KINDS.get(block.code, block.code.decode("ascii", "replace")),
                          "sequence": bool(usage.is_sequence), "used_by": _text(usage.block_name)[2:]})
    return found, truncated


def _present(full: Path, is_sequence: bool) -> bool:
    if not is_sequence:
        return full.is_file()
    if full.is_dir():
        return any(full.iterdir())
    if "*" in full.name:
        return any(full.parent.glob(full.name)) if full.parent.is_dir() else False
    return full.is_file()


def main(argv: list[str]) -> int:
    root, main_path, max_bytes = Path(argv[1]).resolve(), argv[2], int(argv[3])
    limit_self(max_bytes)
    sys.setrecursionlimit(5000)
    from blender_asset_tracer import blendfile
    blend = root / main_path
    try:
        with blendfile.BlendFile(blend) as bfile:
            settings = read_settings(bfile)
        dependencies, truncated = read_dependencies(blend, root)
    except MemoryError:
        print(json.dumps({"error": "the file needs more memory to read than the portal allows"}))
        return 2
    except RecursionError:
        print(json.dumps({"error": "the file's data nests too deeply"}))
        return 2
    except Exception as exc:  # an untrusted file breaks the parser in many ways: all mean "unreadable"
        print(json.dumps({"error": f"{type(exc).__name__}: {exc}"[:300]}))
        return 2
    finally:
        blendfile.close_all_cached()
    print(json.dumps({"settings": settings, "dependencies": dependencies, "truncated": truncated}))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
