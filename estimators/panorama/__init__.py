"""panorama."""
