"""`EstimateRequest`: everything one run of the engine needs, as plain frozen data.

The command line parses its arguments into one, the Blender operators and the headless
script build one from the scene, the benchmarks build one directly; `pipeline.run`
runs it. `check()` finds every usage error that needs no model and no input file, so a
bad request fails before anything is loaded, read or written.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Literal

from ..errors import BadInputError

SAVE_KINDS = ("distance", "disparity", "mask", "preview", "png16", "rgbd")
DEFAULT_SAVE = ("distance", "mask", "preview")
DEPTH_KINDS = ("distance", "disparity")
STEREO_MODEL = "stereo"
DEFAULT_MODEL = "depth-anything-v2-small"
PROJECTIONS = ("equirect", "perspective")
LAYOUTS = ("mono", "top-bottom", "side-by-side", "vr180")
PROGRESS_MODES = ("bar", "json", "none")
SMOOTHINGS = ("none", "median", "bilateral")
SKY_MODES = ("keep", "mask")
EDGE_MODES = ("auto", "snap", "none")
DEFAULT_IPD = 0.064
DEFAULT_POLE_MERGE = (60.0, 75.0)
# Search and validity range of 360 stereo without --near/--far (metres).
STEREO_NEAR, STEREO_FAR = 0.5, 100.0

Projection = Literal["equirect", "perspective"]
Layout = Literal["mono", "top-bottom", "side-by-side", "vr180"]


@dataclass(frozen=True)
class EstimateRequest:
    """One run: `inputs` (stills, videos, image folders, printf patterns) into `output_dir`.

    The fields are the options of `depth360 estimate` (DESIGN.md, `--help`); `frames` is
    (first, last) 1-based inclusive with `last` None for "to the end", `save` None for
    the default kinds, `near`/`far` None for the model's defaults. `overwrite`: a range
    whose recorded options differ from this request's is recomputed instead of refused.
    `input_size`: the network's input side instead of the model's own (518 for the Depth
    Anything families; the official `input_size`); None keeps the model's.
    """

    inputs: tuple[str, ...]
    output_dir: str
    model: str = DEFAULT_MODEL
    models_dir: str | None = None
    projection: Projection = "equirect"
    layout: Layout = "mono"
    ipd: float = DEFAULT_IPD
    pole_merge: tuple[float, float] | None = DEFAULT_POLE_MERGE
    views: str | None = None
    near: float | None = None
    far: float | None = None
    frames: tuple[int, int | None] | None = None
    save: tuple[str, ...] | None = None
    device: str = "auto"
    precision: str = "auto"
    progress: Literal["bar", "json", "none"] = "none"
    stabilise: bool = True
    camera_solve: bool = True
    smoothing: Literal["none", "median", "bilateral"] = "none"
    sky: Literal["keep", "mask"] = "keep"
    refine: bool = False
    edges: Literal["auto", "snap", "none"] = "auto"
    overwrite: bool = False
    input_size: int | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "inputs", tuple(str(i) for i in self.inputs))
        object.__setattr__(self, "output_dir", str(self.output_dir))
        if self.save is not None:
            object.__setattr__(self, "save", tuple(dict.fromkeys(self.save)))
        if self.pole_merge is not None:
            object.__setattr__(self, "pole_merge", tuple(float(v) for v in self.pole_merge))
        if self.frames is not None:
            object.__setattr__(self, "frames", (int(self.frames[0]), None if self.frames[1] is None
                                                else int(self.frames[1])))
        self.check()

    @property
    def stereo(self) -> bool:
        """True when the pure stereo matcher is the model."""
        return self.model == STEREO_MODEL

    @property
    def stereo_input(self) -> bool:
        """True when the input is a stereo pair (any layout but mono)."""
        return self.layout != "mono"

    @property
    def guided(self) -> bool:
        """True for stereo-guided network depth: a network (or plug-in) on a stereo input."""
        return self.stereo_input and not self.stereo

    @property
    def saved(self) -> tuple[str, ...]:
        """The kinds to save (the default when none were asked for)."""
        return self.save or DEFAULT_SAVE

    def check(self) -> None:
        """BadInputError for every usage error that needs no model and no input file (run on creation)."""
        if not self.inputs:
            raise BadInputError("give at least one input")
        if not self.output_dir:
            raise BadInputError("give an output folder (-o OUTDIR)")
        _check_choice("--projection", self.projection, PROJECTIONS)
        _check_choice("--layout", self.layout, LAYOUTS)
        _check_choice("--progress", self.progress, PROGRESS_MODES)
        _check_choice("--smoothing", self.smoothing, SMOOTHINGS)
        _check_choice("--sky", self.sky, SKY_MODES)
        _check_choice("--edges", self.edges, EDGE_MODES)
        self._check_model_and_layout()
        self._check_range()
        self._check_save()
        if self.frames is not None:
            first, last = self.frames
            if first < 1 or (last is not None and last < first):
                raise BadInputError(f"--frames {first}-{'' if last is None else last}: not a 1-based inclusive range")
        if self.pole_merge is not None and not 0.0 <= self.pole_merge[0] < self.pole_merge[1] <= 90.0:
            raise BadInputError(f"--pole-merge {self.pole_merge}: need 0 <= FROM < TO <= 90 degrees")
        if not self.ipd > 0:
            raise BadInputError(f"--ipd {self.ipd} must be positive")
        if self.input_size is not None and not (isinstance(self.input_size, int) and 14 <= self.input_size <= 4096):
            raise BadInputError(f"--input-size {self.input_size}: a whole number of pixels from 14 to 4096")

    def _check_model_and_layout(self) -> None:
        if self.stereo and self.layout == "mono":
            raise BadInputError("--model stereo needs a stereo input: give --layout top-bottom (left eye on top), "
                                "side-by-side (left eye on the left) or vr180 (two 180-degree eyes side by side)")
        if self.layout == "vr180" and self.projection != "equirect":
            raise BadInputError("--layout vr180 is 180-degree equirect footage: leave --projection at equirect")
        if self.guided and self.projection != "equirect":
            raise BadInputError(f"stereo-guided depth (--model {self.model} with --layout {self.layout}) is for 360 "
                                "and VR180 footage: use --projection equirect, or --model stereo for a rectified "
                                "photo pair")
        if self.views is not None:
            from ..panorama.projection import PRESETS

            if self.stereo or self.projection == "perspective" or self.views not in PRESETS:
                raise BadInputError(f"--views is one of {', '.join(PRESETS)}, for a network "
                                    "with --projection equirect (not --model stereo)")

    def _check_range(self) -> None:
        if (self.near is None) != (self.far is None):
            raise BadInputError("--near and --far go together: give both or neither")
        if self.near is not None:
            for name, value in (("--near", self.near), ("--far", self.far)):
                if not (value > 0 and value != float("inf")):
                    raise BadInputError(f"{name} {value} must be a positive finite number")
            if not self.near < self.far:
                raise BadInputError(f"--near ({self.near}) must be less than --far ({self.far})")

    def _check_save(self) -> None:
        unknown = [k for k in self.saved if k not in SAVE_KINDS]
        if unknown or not self.saved:
            raise BadInputError(f"unknown save kind(s) {', '.join(unknown) or '(none)'}; "
                                f"choose from {','.join(SAVE_KINDS)}")
        if "png16" in self.saved and not set(self.saved) & set(DEPTH_KINDS):
            raise BadInputError("--save png16 writes distance or disparity as 16-bit PNG: save one of them too")


def _check_choice(option: str, value: str, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise BadInputError(f"{option} {value!r}: choose one of {', '.join(choices)}")


def request_fields() -> tuple[str, ...]:
    """The names of the request's fields, in order."""
    return tuple(f.name for f in fields(EstimateRequest))
