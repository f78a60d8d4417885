"""Optical flow where a dataset ships none, written in EPIC's format (`mmkd flow`).

quantize.py holds the one shared EPIC quantizer; methods.py TV-L1/DIS/RAFT behind one call;
decode.py frame sources; io.py the file formats; runner.py jobs, parallelism and resumption.
"""

from mmkd.flow.methods import FlowSpec, create_method
from mmkd.flow.quantize import BOUND, dequantize, quantize
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
    "BOUND", "FlowJob", "FlowOptions", "FlowSpec", "FlowSummary", "JobResult", "compute_job",
    "count_pairs", "create_method", "dequantize", "is_done", "plan_manifest", "quantize",
    "record_flow", "run_jobs", "single_job",
]
