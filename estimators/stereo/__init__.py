"""Stereo: omni-directional (matching, ods_geometry) and VR180 (vr180, vr180_geometry) pairs,
sub-pixel refinement (subpixel), and the stereo-guided network depth (guided)."""

from .matching import *  # noqa: F403
from .vr180 import check_vr180_eye, estimate_stereo_vr180  # noqa: F401
