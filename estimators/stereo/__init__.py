"""Stereo."""

from .matching import *  # noqa: F403
