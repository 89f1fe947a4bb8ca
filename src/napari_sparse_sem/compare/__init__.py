"""Compare mask patterns × coverages × reconstruction methods on the same slices, score them and write a report.

:mod:`.spec` holds the parameter model (:class:`CompareSpec`), :mod:`.job` the comparison job, :mod:`.report` and
:mod:`.figure` the report folder, :mod:`.measure` the reconstruct-then-score job of the *Reconstruct* widget.
"""

from napari_sparse_sem.compare.job import (
    RECORD_KEYS,
    CompareResult,
    CompareRun,
    compare_job,
    result_from_runs,
    summary,
)
from napari_sparse_sem.compare.spec import CompareSpec, check_method_options, name_list, region_bounds

__all__ = [
    "RECORD_KEYS",
    "CompareResult",
    "CompareRun",
    "CompareSpec",
    "check_method_options",
    "compare_job",
    "name_list",
    "region_bounds",
    "result_from_runs",
    "summary",
]
