"""Run inside Blender: builds the tiny test scene (64x64, frames 1-2, a cube turning under a sun).

    blender -b --factory-startup --python make_scene.py -- OUT.blend [MARKER]

With MARKER the file also carries the two kinds of code a .blend can run on its own when auto-run
is allowed: a text block registered to run on load, and a scripted driver. Each writes a file
next to MARKER, so a test can see whether it ran."""

import sys

import bpy

args = sys.argv[sys.argv.index("--") + 1:]
out, marker = args[0], (args[1] if len(args) > 1 else None)

bpy.ops.wm.read_factory_settings(use_empty=True)
scene = bpy.context.scene
scene.render.resolution_x = scene.render.resolution_y = 64
scene.render.resolution_percentage = 100
scene.frame_start, scene.frame_end = 1, 2
scene.cycles.use_adaptive_sampling = False  # keeps a many-sample render slow enough to cancel
scene.cycles.tile_size = 32  # several tiles, so progress moves within a frame

bpy.ops.mesh.primitive_cube_add()
cube = bpy.context.object
cube.rotation_euler = (0, 0, 0)
cube.keyframe_insert("rotation_euler", frame=1)
cube.rotation_euler = (0, 0, 1)
cube.keyframe_insert("rotation_euler", frame=2)

camera = bpy.data.objects.new("Camera", bpy.data.cameras.new("Camera"))
scene.collection.objects.link(camera)
scene.camera = camera
camera.location = (5, -5, 4)
camera.rotation_euler = (1.1, 0, 0.785)
sun = bpy.data.objects.new("Sun", bpy.data.lights.new("Sun", "SUN"))
scene.collection.objects.link(sun)

if marker:
    text = bpy.data.texts.new("autorun.py")
    text.write(f"import pathlib\npathlib.Path({marker + '.text'!r}).write_text('text block ran')\n")
    text.use_module = True  # "Register": run when the file loads
    cube["hook"] = 0.0
    driver = cube.driver_add('["hook"]').driver
    driver.type = "SCRIPTED"
    driver.expression = f"__import__('pathlib').Path({marker + '.driver'!r}).write_text('driver ran') and 0"

bpy.ops.wm.save_as_mainfile(filepath=out)
