"""The 360 frame's trip on a torch device (a GPU, or the CPU): what panorama.fusion, postprocess
calibration and video.temporal do, on tensors that stay on the device.

The numpy modules are the reference; each module here mirrors one of them step for step and
says where it departs (only in how, never in what). `fusion.estimate_frames` is the trip;
pipeline.device_frames runs it for the pipeline whenever the estimator is a network.
"""
