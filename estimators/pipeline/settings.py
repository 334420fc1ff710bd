"""`DepthSettings`: a request resolved against its estimator's kind: the rules every frame follows.

Distance needs calibration. Metric estimators (and 360 stereo, and stereo-guided networks)
are metric: distance is 1/disparity clamped to [near, far] (defaults 0.01 m / 1000 m, only
a clamp; stereo input: 0.5 m / 100 m, the stereo's search range). Relative
estimators follow the near/far rule of postprocess.calibration (defaults 1 m / 100 m
for 360 footage). A relative estimator on an ordinary photo (or a rectified stereo pair)
without --near/--far stays uncalibrated: no distance is written, and `disparity` is the
estimator's own output (exactly the official model's for a photo).

Temporal stabilisation needs calibration as well: its alignment puts relative disparity
into shot units (near/far rule applied once to the static scene), its filter averages
metric or aligned disparity. Uncalibrated output is the estimator's own, unstabilised.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace

from ..errors import BadInputError
from ..models.plugins import is_metric
from ..postprocess import Smoothing
from ..video.camera_motion import SolveSettings
from ..video.temporal import StabiliserSettings
from .request import STEREO_FAR, STEREO_NEAR, EstimateRequest

# The camera solve's units: its first points' nearest (99th percentile of inverse distance) at this many
# times `near`. Its points keep away from the poles (the ground right below, a selfie stick) and the
# camera may come nearer later: a margin keeps those surfaces off the near clamp.
GAUGE_NEAR_FACTOR = 2.0
# Near/far defaults (metres): relative models on 360 footage; metric ones are only clamped.
RELATIVE_NEAR, RELATIVE_FAR = 1.0, 100.0
METRIC_NEAR, METRIC_FAR = 0.01, 1000.0
# Colour range of previews and RGBD depth for a metric model without user near/far.
METRIC_DISPLAY_NEAR, METRIC_DISPLAY_FAR = 1.0, 100.0


@dataclass(frozen=True)
class DepthSettings:
    """How one source's frames become depth (see the module docstring).

    `calibrated`: distance is written (False: relative output without near/far).
    `shot_units`: the post-processed disparity already is 1/m (metric, or relative
    aligned by the stabiliser), so distance is only its clamped inverse; otherwise each
    frame follows the near/far percentile rule. `stabiliser`: None when not stabilising.
    `camera`: the camera solve of 360 videos and sequences (its units: the nearest of the
    first points it triangulates at GAUGE_NEAR_FACTOR x `near`), None when it is off.
    `edges`: the plate-guided edge snap of each frame (postprocess.edges): "smeared" (a network's
    resampled edges), or "none" (also for the stereo matcher, which puts its edges right itself:
    stereo.occlusion_edges).
    """

    kind: str
    calibrated: bool
    near: float
    far: float
    display_near: float
    display_far: float
    stabiliser: StabiliserSettings | None
    upsampling: str = "edge-aware"
    refine: bool = False
    smoothing: Smoothing = "none"
    sky: str = "keep"
    wrap: bool = True
    camera: SolveSettings | None = None
    edges: str = "smeared"

    @property
    def metric(self) -> bool:
        return is_metric(self.kind)

    @property
    def shot_units(self) -> bool:
        return self.metric or (self.stabiliser is not None and self.stabiliser.align)

    @property
    def context_frames(self) -> int:
        """Frames before a chunk's first one that its first frame depends on."""
        return self.stabiliser.context_frames if self.stabiliser is not None else 0

    def recorded(self) -> dict:
        """The settings as recorded in the sidecar and compared when a run resumes."""
        return {
            "kind": self.kind, "calibrated": self.calibrated, "near": self.near, "far": self.far,
            "stabilise": asdict(self.stabiliser) if self.stabiliser is not None else None,
            "upsampling": self.upsampling, "refine": self.refine, "smoothing": self.smoothing,
            "sky": self.sky, "wrap": self.wrap, "edges": self.edges,
            "camera_solve": self.camera.recorded() if self.camera is not None else None,
        }


def resolve_settings(request: EstimateRequest, kind: str, stabiliser: StabiliserSettings | None = None,
                     camera: SolveSettings | None = None) -> DepthSettings:
    """The request's depth settings for an estimator of `kind`; BadInputError for a contradiction.

    `camera`: tuned camera-solve settings (its `gauge_distance` is set from `near`).
    """
    metric = is_metric(kind)
    user_range = request.near is not None
    calibrated = metric or user_range or request.projection == "equirect"
    if request.stereo_input and request.projection == "equirect" and not user_range:
        near, far = STEREO_NEAR, STEREO_FAR
        display = (near, far)
    elif user_range:
        near, far = float(request.near), float(request.far)
        display = (near, far)
    else:
        near, far = (METRIC_NEAR, METRIC_FAR) if metric else (RELATIVE_NEAR, RELATIVE_FAR)
        display = (METRIC_DISPLAY_NEAR, METRIC_DISPLAY_FAR) if metric else (near, far)
    if not 0.0 < near < far:
        raise BadInputError(f"--near ({near}) must be positive and less than --far ({far})")
    if not calibrated and "distance" in request.saved and request.save is not None:
        what = ("a rectified stereo pair (disparity in pixels)" if request.stereo
                else f"the relative model {request.model!r}")
        raise BadInputError(f"distance from {what} needs --near and --far "
                            "(the documented rule in `depth360 estimate --help`), or save disparity instead")
    stabilise = request.stabilise and calibrated
    solve = None
    if request.camera_solve and request.projection == "equirect" and request.layout != "vr180":
        solve = replace(camera or SolveSettings(), gauge_distance=GAUGE_NEAR_FACTOR * near)
    return DepthSettings(
        kind=kind, calibrated=calibrated, near=near, far=far, display_near=display[0], display_far=display[1],
        stabiliser=(stabiliser or StabiliserSettings()) if stabilise else None,
        refine=request.refine, smoothing=request.smoothing, sky=request.sky,
        wrap=request.projection == "equirect" and request.layout != "vr180", camera=solve,
        edges="smeared" if request.edges == "snap" and not request.stereo else "none",
    )


def saved_kinds(request: EstimateRequest, settings: DepthSettings) -> tuple[str, ...]:
    """The kinds to write: uncalibrated output writes disparity where the default asks for distance."""
    save = request.saved
    if settings.calibrated or request.save is not None:
        return save
    return tuple(dict.fromkeys("disparity" if k == "distance" else k for k in save))


def uncalibrated_note(request: EstimateRequest, settings: DepthSettings) -> str | None:
    """The note printed when the default distance is replaced by disparity."""
    if settings.calibrated or request.save is not None or "distance" not in request.saved:
        return None
    what = "stereo pair" if request.stereo else "relative model"
    return f"{what} without --near/--far: writing disparity instead of distance"
