"""The performance model: operator profiles x catalog entries -> step time, throughput, memory. No torch."""

from .roofline import Calibration, StepPrediction, cpu_as_device, generation, precision_reason, predict_step

__all__ = ["Calibration", "StepPrediction", "cpu_as_device", "generation", "precision_reason", "predict_step"]
