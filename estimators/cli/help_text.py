"""The long help of `depth360 estimate` (its epilog): outputs, depth kinds, sky, stereo, cluster."""

ESTIMATE_EPILOG = """\
outputs: a still photo.jpg gives OUTDIR/photo.<kind>.exr for each kind saved (float32,
one channel "Y"), OUTDIR/photo.preview.png (inferno colours, near is bright),
OUTDIR/photo.<kind>.png for png16 (the value range is in the sidecar), and
OUTDIR/photo.json (model, options, version, timings). A video or image sequence
(a folder of numbered images, or a printf pattern such as shot/frame_%05d.png) clip
gives OUTDIR/clip/distance_00001.exr, mask_00001.exr, preview_00001.png, ... (frame
numbers 1-based; rgbd_00001.png for --save rgbd: colour over depth), preview.mp4 and
the sidecar OUTDIR/clip/clip.json. A still is a one-frame sequence: the same stages,
the same numbers.

depth kinds: `distance` is metres along each pixel's ray (a photo: along the camera
axis). `mask` is 1 where the depth is valid, 0 for sky, unseen pixels and anything at
or beyond infinity. Where the mask is 1, `disparity` = 1 / distance exactly; where it is
0, disparity is 0 and distance holds the far value. No file holds NaN or Inf.

calibration: relative models (Depth Anything V2, MiDaS) give disparity up to scale and
shift; inverse distance is taken affine in it, the 2nd percentile at 1/far and the 98th
at 1/near, clamped to [near, far] (360 footage: default 1 m / 100 m), the percentiles
taken over finite pixels (not the sky). Metric models and 360 stereo are only clamped to
[near, far]; metric Depth Anything V2 gives depth to the image plane, which for a photo
is the distance file as is, and in 360 is turned into distance along each ray.

sky: pixels at infinity (found from the depth's floor and a smooth picture connected to
the zenith; for metric models also anything beyond their range) are written as far,
disparity 0, mask 0. With --projection perspective (an ordinary
photo, whose field of view is unknown) a relative model without --near/--far is not
calibrated: `disparity` is then the model's own output, exactly the official one, and
the default --save writes disparity instead of distance.

--projection equirect (default): 360 footage (width = 2 x height), seen through the
--views layout (default cube), aligned and blended seam-free.

stereo (--model stereo with --layout top-bottom, left eye on top, side-by-side, left eye
on the left, or vr180, two 180 x 180 degree half-equirect eyes side by side, left eye on
the left): depth of the left eye (written as photo.left.png for a still), at the eye's
size. 360 footage is omni-directional stereo (ODS, Blender's spherical stereo) with the
eyes --ipd apart and --pole-merge angles; VR180 is two parallel eyes --ipd apart, its
distance measured from the left eye. --near and --far bound the search (default 0.5 m to
100 m). Matching runs at most 2048 wide, refined to sub-pixel at the input's width;
disparities under 1 px of the matched eye cannot be measured, and pixels whose
disparity is not known to a few percent (too little texture for how far they are) are
off the mask with them; sky is off the mask too. A pair is refused only when its eyes
are one picture (equal within one 8-bit level on 99.9% of the pixels). With
--projection perspective the pair is a rectified photo pair: `disparity` is in pixels
of the left eye; `distance` follows the relative rule.

stereo-guided (a network or plug-in --model with a stereo --layout): the network's
disparity of the left eye, fused over --views as for mono 360 footage, is mapped to the
stereo's metres by a smooth scale and shift field fitted where the stereo is confident:
dense metric distance with the network's edges, on every pixel but the sky (VR180: the
180-degree field). `--model stereo` stays the pure stereo path.

videos: depth is stabilised over time (--no-stabilise to turn it off). 360 videos and
sequences also get a camera solve (--no-camera-solve to turn it off): each frame's
rotation and location, from the frames alone and robust to moving objects, recorded in
the sidecar (OUTDIR/clip/clip.json, "camera"); with a moving camera the stabiliser
follows it, moving earlier frames' depth into each frame. Locations are in metres for
metric models and stereo, else in shot units (the stabilised depth's own: distance is
1 / disparity), fixed once per shot with the nearest of the first points the solve
triangulates at twice --near. A cut (two shots joined) starts a new pose chain, whose world
is its first frame, and a new reference; a black or featureless frame keeps the pose
before it, with a warning. --frames A-B runs a chunk (with the context frames the
stabiliser needs before A; the camera solve reads from the shot's first frame to a few
frames past B, so a chunk's poses and depth equal a whole-shot run's); chunks of one
shot with equal options can share a folder, even at the same time.

resume: frames already complete from an earlier run are skipped, if that run's options
(recorded in its sidecar: model, views, near/far, stabilisation, layout, the input
itself...) equal this run's. If they differ the run stops (exit 2) naming each option
that differs and touching nothing; --overwrite replaces what was made with other
options.

progress: --progress bar redraws a bar on a terminal; where stderr is a pipe or a file
it writes one plain line every few seconds instead. --progress json prints one JSON
line per frame written on stdout: {"frame", "done", "total", "fps", "eta_s"}.

cluster (--cluster, the optional Ray extra): `ray` starts a Ray cluster here for the
job; `ray:HOST:PORT` joins the one whose head runs `ray start --head --port PORT`;
`ray://HOST:PORT` joins it through its Ray Client server. A video is split into chunks
(--chunk-frames), each run with its context frames (the same files as one run) as a task
asking for a GPU where the cluster has them. Every node must see the inputs, models and
OUTDIR at the same paths (shared storage): the job checks, and names a node that cannot.
A failed chunk is tried again (--retries); rerunning a stopped job resumes it.

exit status: 0 done, 2 bad usage or bad input (including a rerun whose options differ
from the finished frames'), 3 weights missing, 1 anything else.
"""
