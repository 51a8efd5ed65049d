"""Fixtures for the portal's tests beyond tests/conftest.py."""

import pytest

from tests.conftest import missing

from .blend_fixture import make_blends, make_project


@pytest.fixture(scope="session")
def real_blends(tmp_path_factory):
    """Plain and compressed .blend files saved by the real Blender, made once per run."""
    blends = make_blends(tmp_path_factory.mktemp("blends"))
    if blends is None:
        missing("Blender is not installed (Debian package 'blender')")
    return blends


@pytest.fixture(scope="session")
def real_project(tmp_path_factory):
    """A project folder saved by Blender: shot.blend, textures/green.png, lib/props.blend."""
    root = make_project(tmp_path_factory.mktemp("project"))
    if root is None:
        missing("Blender is not installed (Debian package 'blender')")
    return root
