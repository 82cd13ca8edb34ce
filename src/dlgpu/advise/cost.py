"""The arithmetic of a job on a candidate: time, data-parallel scaling, energy, and money. Pure functions of
figures that each carry their provenance; no I/O, no torch."""

from __future__ import annotations

import math

JOULES_PER_KWH = 3.6e6


def job_time_s(samples: float, samples_per_s: float) -> float:
    return samples / samples_per_s if samples_per_s > 0 else math.inf


def allreduce_s(gradient_bytes: float, gpus: int, link_bytes_per_s: float) -> float:
    """Ring all-reduce of the gradients over ``gpus`` devices: each sends and receives 2 (n-1)/n of the
    buffer over its link (the bandwidth-optimal algorithm NCCL uses for large buffers)."""
    if gpus <= 1:
        return 0.0
    return 2.0 * (gpus - 1) / gpus * gradient_bytes / link_bytes_per_s


def data_parallel_samples_per_s(step_s: float, batch: int, gpus: int, allreduce: float) -> float:
    """Throughput of ``gpus`` data-parallel replicas, each a step of ``batch`` samples, with the gradient
    all-reduce not overlapped with the backward pass (an upper bound on the step; PyTorch DDP overlaps part
    of it)."""
    return gpus * batch / (step_s + allreduce)


def energy_kwh(power_w: float, seconds: float, pue: float = 1.0) -> float:
    return power_w * seconds * pue / JOULES_PER_KWH


def amortized_usd(price_usd: float, job_s: float, hours_per_day: float, lifetime_years: float) -> float:
    """The share of a purchase one job uses: its hours over the hours the device is used in its life."""
    life_h = hours_per_day * 365 * lifetime_years
    return price_usd * (job_s / 3600.0) / life_h


def rent_usd(usd_per_hour: float, job_s: float) -> float:
    """On-demand rent, billed per second (the major clouds bill per second after the first minute)."""
    return usd_per_hour * job_s / 3600.0
