"""The stereo-guided frame estimator: a network's dense disparity in the stereo's metres (stereo.guided)."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from .frame_estimators import (
    STEREO_LAYOUTS,
    FramePrediction,
    StereoFrames,
    check_kind,
    check_stereo_frame,
    describe_model,
    vr180_description,
)
from .request import STEREO_FAR, STEREO_NEAR


class StereoGuidedFrameEstimator(StereoFrames):
    """Stereo frames through stereo.guided, one frame a call: the stereo (ODS or VR180) and the
    network fused on the left eye (`views`), the network's disparity mapped to the stereo's
    metres by a smooth field. The kind is metric-distance (1/m handed on, dense: every pixel
    the network sees but the sky); the depth belongs to the left eye (`depth_frame`)."""

    batch_size = 1
    kind = "metric-distance"
    prefix_bad_input = False

    def __init__(self, estimator, layout: str, *, views="cube", ipd: float = 0.064,
                 pole_merge: tuple[float, float] | None = (60.0, 75.0), min_distance: float = STEREO_NEAR,
                 max_distance: float = STEREO_FAR, warn: Callable[[str], None] | None = None, **fusion_options):
        check_kind(estimator)
        if layout not in STEREO_LAYOUTS:
            raise ValueError(f"layout must be one of {', '.join(STEREO_LAYOUTS)}, got {layout!r}")
        self.estimator, self.layout, self.views = estimator, layout, views
        self.ipd, self.pole_merge = float(ipd), pole_merge
        self.min_distance, self.max_distance = float(min_distance), float(max_distance)
        self.warn, self.fusion_options = warn, fusion_options
        self.last_timings: dict[str, float] = {}
        self._checked_eye_order = False

    def _estimate_one(self, frame: np.ndarray) -> FramePrediction:
        from ..stereo import split_stereo
        from ..stereo.guided import estimate_guided

        check_stereo_frame(self.layout, frame.shape[1], frame.shape[0])
        left, right = split_stereo(frame, self.layout)
        guided = estimate_guided(left, right, self.estimator, vr180=self.layout == "vr180", views=self.views,
                                 ipd=self.ipd, pole_merge=self.pole_merge, min_distance=self.min_distance,
                                 max_distance=self.max_distance, check_eye_order=not self._checked_eye_order,
                                 **self.fusion_options)
        self._checked_eye_order = True
        self.last_timings = guided.timings
        return FramePrediction(guided.disparity, guided.mask.copy())

    def describe(self) -> dict:
        """Model, views and stereo settings for the sidecar."""
        views = self.views if isinstance(self.views, str) else f"{len(self.views)} views"
        described = {**describe_model(self.estimator), "kind": self.kind, "network_kind": self.estimator.kind,
                     "adapter": "stereo-guided network", "views": views, "layout": self.layout, "eye": "left",
                     "guidance": "network disparity mapped to the stereo's metres by a smooth scale and shift field"}
        if self.layout == "vr180":
            described.update(vr180_description(self.ipd, self.min_distance, self.max_distance))
        else:
            from ..stereo.guided import FAR_MATCH_WIDTH, FAR_SHARES, FAR_STEREO_WIDTH

            described.update(geometry="omni-directional stereo (ODS), parallel eyes", ipd=self.ipd,
                             pole_merge=list(self.pole_merge) if self.pole_merge else None,
                             min_distance=self.min_distance, max_distance=self.max_distance,
                             far_field={"shares_beyond_reach": list(FAR_SHARES), "eye_width": FAR_STEREO_WIDTH,
                                        "match_width": FAR_MATCH_WIDTH})
        return described
