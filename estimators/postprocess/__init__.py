"""Post-processing."""

from .filters import *  # noqa: F403
