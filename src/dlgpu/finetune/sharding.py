"""Several GPUs: where the model states live under data parallelism, DeepSpeed ZeRO-1/2/3 and PyTorch FSDP, with
optional CPU offload, and what the collectives cost over the catalog's interconnect. No torch here.

Model states per GPU over N data-parallel ranks (LLM.md §7, the ZeRO paper arXiv:1910.02054 Fig. 1): with Ψ
trainable parameters in DeepSpeed's mixed precision (16-bit working weights and gradients, an fp32 master copy and
fp32 optimizer states: K = 12 for Adam), ZeRO-1 keeps 2Ψ + 2Ψ + KΨ/N, ZeRO-2 2Ψ + (2 + K)Ψ/N, ZeRO-3 (4 + K)Ψ/N.
FSDP FULL_SHARD shards like ZeRO-3, in the dtypes PyTorch keeps (the weights' dtype, no separate master copy).
Frozen weights (LoRA's base) are replicated except under ZeRO-3/FSDP, which shard every parameter. ZeRO-3/FSDP
also hold gathered layers: DeepSpeed's estimator counts 4 x the largest layer's parameters (its 16-bit weights and
gradients; LLM.md §7); FSDP's current and prefetched unit at 2 bytes are the same 4 bytes per parameter.

Offload (ZeRO-Offload): ``optimizer`` moves the fp32 master weights, the optimizer states and the fp32 gradients to
CPU memory (the GPU keeps the 16-bit weights: DeepSpeed's estimator's GPU 2Ψ); ``params`` (ZeRO-3/FSDP) the weights
too (GPU: the gathered layers only). CPU memory is what moved there, for every GPU of the node (one node assumed),
x 1.5: DeepSpeed's estimators' ``additional_buffer_factor`` (LLM.md §7).

Collectives (LLM.md §7 via nccl-tests' bus bandwidth, MEASUREMENT.md §7): a ring all-reduce of S bytes moves
2(N-1)/N x S per GPU, a reduce-scatter or all-gather (N-1)/N x S. DDP all-reduces the gradients once per optimizer
step (``no_sync`` during accumulation); ZeRO-1 reduce-scatters the gradients and all-gathers the updated 16-bit
weights, once per step (the all-reduce's volume); ZeRO-2 reduce-scatters each micro-batch's gradients and
all-gathers the weights once per step; ZeRO-3/FSDP all-gather the weights in the forward and again in the backward
and reduce-scatter the gradients, every micro-batch. Time = bytes / the link's bandwidth in one direction: the
catalog's interconnect figures are bidirectional totals (its notes: "112.5 GB/s bidirectional", "300+300 GB/s"), so
half of it; a GPU with no interconnect in the catalog talks over its PCIe host link. Assumed, and stated in every
basis: the full link rate (nccl-tests' bus bandwidth reaches less: a lower bound on the collectives' time) and no
overlap with compute (DDP and FSDP overlap part of it: an upper bound on the step)."""

from __future__ import annotations

import csv
import functools
import io
import re
from dataclasses import dataclass
from importlib import resources

from dlgpu.catalog import Catalog, GpuSpec

from .config import FinetuneConfig

BUFFER_FACTOR = 1.5
"""DeepSpeed's estimators' ``additional_buffer_factor`` for CPU memory (LLM.md §7)."""
HOST_LINKS_FILE = "host_links.csv"
HOST_CPU = "xeon-platinum-8480plus"
"""The catalog CPU assumed to host offloaded optimizer states: the CPU of an NVIDIA DGX H100 (two Xeon Platinum
8480C; one socket's memory bandwidth is counted). An assumption, stated in the basis of every offloaded figure."""


def deepspeed_mode(cfg: FinetuneConfig) -> bool:
    """Whether DeepSpeed keeps the states: its ZeRO stages (fp32 master weights and fp32 optimizer states)."""
    return cfg.sharding in ("zero1", "zero2", "zero3")


@dataclass(frozen=True)
class Shares:
    """Per GPU bytes of each kind of model state, the CPU memory needed, and how each was reached."""

    trainable_weights: int
    gradients: int
    optimizer: int  # fp32 master weights (DeepSpeed) and the optimizer's states
    base_weights: int
    gathered: int  # ZeRO-3 / FSDP: the gathered layers
    cpu_bytes: int | None
    basis: str
    cpu_basis: str


def shard(cfg: FinetuneConfig, weights: int, grads: int, master: int, states: int, base: int, largest_layer: int,
          ddp_buckets: int, trainable_params: int) -> Shares:
    """Each state's bytes on one GPU (``weights``, ... are the unsharded totals) under ``cfg.sharding`` and
    ``cfg.offload``; ``largest_layer``: parameters of the largest block; ``ddp_buckets``: DDP's gradient buckets."""
    n, s, off = cfg.gpus, cfg.sharding, cfg.offload
    opt = master + states
    gathered = 4 * largest_layer if s in ("zero3", "fsdp") else 0
    if s in ("none", "ddp"):
        sh = Shares(weights, grads + (ddp_buckets if s == "ddp" else 0), opt, base, 0, None,
                    "one GPU holds every state" if s == "none" else
                    f"DDP: each of {n} GPUs holds every state, plus its gradient buckets (gradients' size: PyTorch "
                    "DDP's gradient_as_bucket_view=False default)", "")
    elif s == "zero1":
        sh = Shares(weights, grads, opt // n, base, 0, None, f"ZeRO-1: optimizer states (and master weights) / {n}", "")
    elif s == "zero2":
        sh = Shares(weights, grads // n, opt // n, base, 0, None,
                    f"ZeRO-2: gradients and optimizer states / {n}", "")
    else:
        sh = Shares(weights // n, grads // n, opt // n, base // n, gathered, None,
                    f"{'ZeRO-3' if s == 'zero3' else 'FSDP FULL_SHARD'}: every state / {n}, plus 4 B x the largest "
                    "layer's parameters gathered (DeepSpeed's estimator's L)", "")
    if off == "none":
        return sh
    cpu = opt + 4 * trainable_params  # the states and fp32 gradients of every rank (DeepSpeed's 16 B with Adam)
    gpu_weights = sh.trainable_weights
    base_gpu = sh.base_weights
    if off == "params":
        cpu += weights + base
        gpu_weights, base_gpu = 0, 0
    what = "optimizer states, master weights and fp32 gradients" + (", and the weights" if off == "params" else "")
    return Shares(gpu_weights, 0, 0, base_gpu, sh.gathered, int(cpu * BUFFER_FACTOR),
                  sh.basis + f"; offloaded to CPU memory: {what}",
                  f"what moved to CPU memory for the node's {n} GPU(s) x {BUFFER_FACTOR} (DeepSpeed's "
                  "additional_buffer_factor, LLM.md §7)")


def deepspeed_estimate(cfg: FinetuneConfig, total_params: int, largest_layer: int) -> dict[str, float] | None:
    """DeepSpeed's own estimators for full fine-tuning (LLM.md §7; one node of ``cfg.gpus`` GPUs,
    ``zero_init=True``): ``estimate_zero2_model_states_mem_needs`` for ZeRO-1/2 and
    ``estimate_zero3_model_states_mem_needs`` for ZeRO-3; None for other shardings."""
    p, n, f = total_params, cfg.gpus, BUFFER_FACTOR
    cpu_off = cfg.offload != "none"
    if cfg.sharding in ("zero1", "zero2"):
        if cpu_off:
            return {"gpu_bytes": 2 * p, "cpu_bytes": p * max(4 * n, 16) * f}
        return {"gpu_bytes": 2 * p + 18 * p / n, "cpu_bytes": 4 * p * n * f}
    if cfg.sharding == "zero3":
        layer = 4 * largest_layer
        if cfg.offload == "params":
            return {"gpu_bytes": layer, "cpu_bytes": 18 * p * f}
        if cpu_off:
            return {"gpu_bytes": layer + 2 * p / n, "cpu_bytes": 16 * p * f}
        return {"gpu_bytes": layer + 18 * p / n, "cpu_bytes": largest_layer * 4 * n * f}
    return None


# --- links -------------------------------------------------------------------------------------------------------

@functools.cache
def _host_links() -> dict[str, tuple[str, str]]:
    text = (resources.files("dlgpu.finetune") / "data" / HOST_LINKS_FILE).read_text(encoding="utf-8")
    return {r["gpu_id"]: (r["host_link"], r["source_url"]) for r in csv.DictReader(io.StringIO(text))}


def _pcie_rate(catalog: Catalog, link: str) -> float | None:
    """The catalog's figure for a PCIe link ("PCIe 4.0 x16"): the interconnect figure of its rows whose only
    interconnect is that link (the catalog states PCIe in both directions, nominal)."""
    rates = {g.interconnect_bytes_per_s for g in catalog.gpus
             if (g.interconnect or "").strip() == link and g.interconnect_bytes_per_s}
    return max(rates) if len(rates) == 1 else None


def host_link(catalog: Catalog, gpu: GpuSpec) -> tuple[float | None, str]:
    """(bytes/s in one direction between the GPU and the host, basis): the PCIe link its catalog row names, else
    the one ``data/host_links.csv`` names (with its source); None where neither does."""
    m = re.search(r"PCIe \d\.0 x16", gpu.interconnect or "")
    link, where = (m[0], "its catalog row") if m else (None, "")
    if link is None and gpu.id in _host_links():
        link, src = _host_links()[gpu.id]
        where = f"finetune/data/{HOST_LINKS_FILE} ({src})"
    if link is None:
        return None, f"{gpu.id}: neither the catalog nor finetune/data/{HOST_LINKS_FILE} names its PCIe link"
    rate = _pcie_rate(catalog, link)
    if rate is None:
        return None, f"{gpu.id}: {link} (from {where}), but the catalog has no one figure for {link}"
    return rate / 2, f"{link} from {where}: {rate / 2e9:.0f} GB/s each way (half the catalog's {rate / 1e9:.0f} GB/s)"


def gpu_link(catalog: Catalog, gpu: GpuSpec) -> tuple[float | None, str]:
    """(bytes/s in one direction between two GPUs, basis): half the catalog's bidirectional interconnect figure;
    without one, the PCIe host link (the GPUs talk through the host)."""
    if gpu.interconnect_bytes_per_s:
        return gpu.interconnect_bytes_per_s / 2, (
            f"{gpu.interconnect}: {gpu.interconnect_bytes_per_s / 2e9:.1f} GB/s each way (half the catalog's "
            "bidirectional figure)")
    rate, basis = host_link(catalog, gpu)
    if rate is None:
        return None, f"the catalog gives no interconnect for {gpu.id} and {basis}"
    return rate, f"no interconnect in the catalog: the GPUs talk over the host link, {basis}"


# --- collectives -------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Collectives:
    bytes_per_step: float  # per GPU, sent (each direction)
    time_s: float | None  # None where the link is unknown
    basis: str


def collectives(cfg: FinetuneConfig, catalog: Catalog, gpu: GpuSpec, trainable_params: int,
                all_params_16bit_bytes: int, grad_bytes_per_param: float) -> Collectives:
    """Bytes each GPU sends per optimizer step and the time at the link's rate (module docstring).
    ``all_params_16bit_bytes``: what a ZeRO-3/FSDP all-gather of every weight moves (frozen ones included)."""
    n, s, acc = cfg.gpus, cfg.sharding, cfg.grad_accum
    if n == 1:
        return Collectives(0.0, 0.0, "one GPU: no collectives")
    grads = trainable_params * grad_bytes_per_param
    ring = (n - 1) / n
    if s == "ddp":
        volume, what = 2 * ring * grads, "all-reduce of the gradients once per step"
    elif s == "zero1":
        volume, what = 2 * ring * grads, "reduce-scatter of the gradients + all-gather of the weights, once per step"
    elif s == "zero2":
        volume = ring * grads * acc + ring * trainable_params * 2
        what = "reduce-scatter of each micro-batch's gradients + all-gather of the weights once per step"
    else:
        volume = acc * (2 * ring * all_params_16bit_bytes + ring * grads)
        what = ("all-gather of every weight in forward and in backward + reduce-scatter of the gradients, per "
                "micro-batch")
    rate, link = gpu_link(catalog, gpu)
    basis = (f"{s} over {n} GPUs: {what} ({volume / 1e9:.2f} GB per GPU per step); {link}; at the full link rate "
             "and not overlapped with compute")
    return Collectives(volume, None if rate is None else volume / rate, basis)


def offload_transfer(cfg: FinetuneConfig, catalog: Catalog, gpu: GpuSpec, trainable_params: int,
                     all_params_16bit_bytes: int) -> tuple[float | None, str]:
    """Seconds per step of the host-link traffic offload adds, per GPU: its gradient partition to the CPU and the
    updated 16-bit weights back; with ``params`` offloaded, every weight partition fetched for the forward and the
    backward of each micro-batch too."""
    if cfg.offload == "none":
        return 0.0, "no offload"
    n = cfg.gpus
    volume = 2 * (trainable_params * 2 / n)  # 16-bit gradients out, 16-bit weights back
    if cfg.offload == "params":
        volume += cfg.grad_accum * 2 * all_params_16bit_bytes / n
    rate, link = host_link(catalog, gpu)
    if rate is None:
        return None, f"offload traffic not timed: {link}"
    return volume / rate, (f"offload: {volume / 1e9:.2f} GB per GPU per step over {link}, at the full rate, not "
                           "overlapped")
