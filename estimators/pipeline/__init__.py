"""The one pipeline every input takes: read -> estimate -> post-process -> write (see run.py).

    from depth360.estimators.pipeline import EstimateRequest, run
    result = run(EstimateRequest(inputs=("pano.jpg",), output_dir="out", near=0.5, far=50))
"""

from .request import EstimateRequest
from .run import RunResult, SourceResult, run

__all__ = ["EstimateRequest", "RunResult", "SourceResult", "run"]
