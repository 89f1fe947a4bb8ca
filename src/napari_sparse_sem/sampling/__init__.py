"""Scan masks, beam paths, acquisition-time estimates and simulated (noisy) sparse acquisitions."""

from .acquisition import add_shot_noise, equal_time_dose, simulate_acquisition, slice_noise_rng
from .path import AcquisitionTime, dense_scan_time, estimate_time, path_length, serpentine_order, spiral_path
from .patterns import make_mask, make_masks, slice_mask, target_count
from .record import RECORD_KEY, AcquisitionRecord
from .simulate import SimulatedScan, simulate_job
from .spec import PATTERNS, AcquisitionSpec, MaskResult, MaskSpec

__all__ = [
    "PATTERNS",
    "RECORD_KEY",
    "AcquisitionRecord",
    "AcquisitionSpec",
    "AcquisitionTime",
    "MaskResult",
    "MaskSpec",
    "SimulatedScan",
    "add_shot_noise",
    "dense_scan_time",
    "equal_time_dose",
    "estimate_time",
    "make_mask",
    "make_masks",
    "path_length",
    "serpentine_order",
    "simulate_acquisition",
    "simulate_job",
    "slice_mask",
    "slice_noise_rng",
    "spiral_path",
    "target_count",
]
