"""Depth EXRs as the sequence pipeline writes them load in Blender as Non-Color float images, exactly.

Runs on bpy 5.0 (.venv) and bpy 4.2 LTS (.venv-bpy42). Where the engine's image_io can be
imported it writes the file; otherwise (the 4.2 environment has only numpy and OpenEXR)
the file is written with the OpenEXR package exactly as image_io.write_exr does: one
float32 channel "Y", ZIP compression, scanlines.
"""

from __future__ import annotations

import numpy as np


def write_depth_exr(path, values):
    try:
        from depth360.estimators.media import image_io
    except ImportError:
        import OpenEXR

        header = {"compression": OpenEXR.ZIP_COMPRESSION, "type": OpenEXR.scanlineimage}
        with OpenEXR.File(header, {"Y": np.ascontiguousarray(values, dtype=np.float32)}) as file:
            file.write(str(path))
        return "OpenEXR"
    image_io.write_exr(path, values)
    return "image_io"


def test_depth_exr_loads_as_non_color_and_round_trips_exactly(tmp_path):
    import bpy

    rng = np.random.default_rng(5)
    height, width = 12, 24
    values = (rng.uniform(0.01, 1000.0, (height, width)) ** rng.uniform(0.5, 1.5, (height, width))).astype(np.float32)
    values[0, 0], values[-1, -1] = 100.0, 1.0 / 3.0  # the far value, and a value with a long mantissa
    path = tmp_path / "distance_00001.exr"
    write_depth_exr(path, values)

    image = bpy.data.images.load(str(path), check_existing=False)
    try:
        image.colorspace_settings.name = "Non-Color"
        assert image.colorspace_settings.name == "Non-Color"
        assert image.is_float
        assert tuple(image.size) == (width, height)
        pixels = np.empty(width * height * 4, dtype=np.float32)
        image.pixels.foreach_get(pixels)
        rgba = pixels.reshape(height, width, 4)[::-1]  # Blender stores rows bottom-up
        for channel in range(3):
            np.testing.assert_array_equal(rgba[..., channel], values)
        np.testing.assert_array_equal(rgba[..., 3], 1.0)
    finally:
        bpy.data.images.remove(image)
