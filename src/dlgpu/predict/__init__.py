"""The performance model: operator profiles x catalog entries -> step time, throughput, memory. No torch."""

from .roofline import Calibration, StepPrediction, generation, precision_reason, predict_step

__all__ = ["Calibration", "StepPrediction", "generation", "precision_reason", "predict_step"]
