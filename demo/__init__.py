"""The built-in example and the main job that `make demo` runs."""
