"""Optical flow where a dataset ships none, written in EPIC's format (`mmkd flow`).

methods.py TV-L1/DIS/RAFT behind one call; decode.py frame sources; io.py the file formats;
runner.py jobs, parallelism and resumption. The EPIC quantizer is `mmkd.datasets.flow_format`.
"""

from mmkd.flow.methods import FlowSpec, create_method
from mmkd.flow.runner import (
    FlowJob,
    FlowOptions,
    FlowSummary,
    JobResult,
    compute_job,
    count_pairs,
    is_done,
    plan_manifest,
    record_flow,
    run_jobs,
    single_job,
)

__all__ = [
    "FlowJob", "FlowOptions", "FlowSpec", "FlowSummary", "JobResult", "compute_job",
    "count_pairs", "create_method", "is_done", "plan_manifest", "record_flow", "run_jobs",
    "single_job",
]
