"""Run by Blender: the cube scene of make_scene.py plus one way of reaching outside the task folder.

blender -b --factory-startup --python make_hostile_scene.py -- OUT.blend KIND PATH
KIND: texture (an image texture filling the frame, at PATH as written, e.g. //../../secret.png),
fluid (a fluid domain caching to the folder PATH), pointcache (particles with an external cache
at PATH). Paths are saved exactly as given (no remapping)."""

import sys

import bpy

out, kind, target = sys.argv[sys.argv.index("--") + 1:][:3]
bpy.ops.wm.read_factory_settings(use_empty=True)
scene = bpy.context.scene
scene.render.resolution_x = scene.render.resolution_y = 32
scene.frame_start, scene.frame_end = 1, 2
scene.render.engine = "CYCLES"
scene.cycles.samples = 1

bpy.ops.object.camera_add(location=(0, 0, 3))
scene.camera = bpy.context.object
bpy.ops.mesh.primitive_plane_add(size=4)
plane = bpy.context.object

if kind == "texture":
    image = bpy.data.images.new("secret", 4, 4)
    image.source = "FILE"
    image.filepath = target
    material = bpy.data.materials.new("leak")
    material.use_nodes = True
    nodes = material.node_tree.nodes
    tex = nodes.new("ShaderNodeTexImage")
    tex.image = image
    emission = nodes.new("ShaderNodeEmission")
    material.node_tree.links.new(tex.outputs["Color"], emission.inputs["Color"])
    material.node_tree.links.new(emission.outputs["Emission"], nodes["Material Output"].inputs["Surface"])
    plane.data.materials.append(material)
elif kind == "fluid":
    bpy.ops.mesh.primitive_cube_add(size=1)
    domain = bpy.context.object
    fluid = domain.modifiers.new("Fluid", "FLUID")
    fluid.fluid_type = "DOMAIN"
    fluid.domain_settings.cache_directory = target
elif kind == "pointcache":
    plane.modifiers.new("Particles", "PARTICLE_SYSTEM")
    cache = plane.particle_systems[0].point_cache
    cache.use_external = True
    cache.filepath = target
else:
    raise SystemExit(f"unknown kind {kind}")

bpy.ops.wm.save_as_mainfile(filepath=out, relative_remap=False)
