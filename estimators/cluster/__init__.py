"""A shot across many machines: the chunks of a video on a Ray cluster (`depth360 estimate --cluster`).

    from depth360.estimators.cluster import ClusterOptions, run_on_cluster
    result = run_on_cluster(request, ClusterOptions("10.0.0.5:6379", chunk_frames=100, retries=3))

`options` parses `--cluster ray[:ADDRESS]`; `plan` splits a range into chunks; `tasks`
is what runs on the nodes (plan, storage probe, chunk); `board` carries the chunks'
progress to the driver; `assemble` writes each video's sidecar and preview video;
`driver` ties them together. Ray is an optional extra: nothing here imports it until a
job starts.
"""

from .driver import ClusterError, ClusterRunResult, run_on_cluster
from .options import ClusterOptions, parse_cluster

__all__ = ["ClusterError", "ClusterOptions", "ClusterRunResult", "parse_cluster", "run_on_cluster"]
