"""The vocabularies every layer shares: schema ids of every JSON document dlgpu prints or stores, precisions,
tasks and candidate sources. The command line takes its choices from here."""

from __future__ import annotations

from typing import Literal

BENCH_SCHEMA = "dlgpu.bench/1"
WORKLOADS_SCHEMA = "dlgpu.workloads/1"
WORKLOAD_SCHEMA = "dlgpu.workload/1"
PREDICT_SCHEMA = "dlgpu.predict/1"
ANALYZE_SCHEMA = "dlgpu.analyze/1"
ADVISE_SCHEMA = "dlgpu.advise/1"
VALIDATE_SCHEMA = "dlgpu.validate/1"
CALIBRATION_SCHEMA = "dlgpu.calibration/1"
RUNS_SCHEMA = "dlgpu.runs/1"
EXPORT_SCHEMA = "dlgpu.export/1"
IMPORT_SCHEMA = "dlgpu.import/1"
COMPARE_SCHEMA = "dlgpu.compare/1"
REPORT_SCHEMA = "dlgpu.report/1"
HARDWARE_SCHEMA = "dlgpu.hardware/1"
HARDWARE_ENTRY_SCHEMA = "dlgpu.hardware.entry/1"
PROBE_SCHEMA = "dlgpu.probe/1"
DOCTOR_SCHEMA = "dlgpu.doctor/1"

Task = Literal["train", "infer", "decode"]
PRECISIONS: tuple[str, ...] = ("fp32", "tf32", "bf16", "fp16")
WEIGHT_PRECISIONS: tuple[str, ...] = ("int8", "int4")
"""Weight formats that only LLM workloads (family ``llm``) run in ``dlgpu bench``: the linear layers' weights stored
as int8 (per row) or int4 (groups of 128) by torchao's weight-only quantization, computing in bf16. For those
workloads bf16 and fp16 also mean the weights and KV cache are stored in that dtype, rather than autocast."""
BENCH_PRECISIONS: tuple[str, ...] = (*PRECISIONS, *WEIGHT_PRECISIONS)
"""What ``bench --precision`` takes (besides ``all``) with the PyTorch runtime, in the order results are listed."""
GGUF_PRECISIONS: tuple[str, ...] = ("f16", "q8_0", "q4_0")
"""What ``bench --runtime llama.cpp --precision`` takes (besides ``all``): the GGUF weight type of the synthetic file
llama.cpp runs (``measure.llamacpp``: every matrix at that type, norms F32), in the order results are listed."""
RESULT_PRECISIONS: tuple[str, ...] = (*BENCH_PRECISIONS, *GGUF_PRECISIONS)
"""Every precision a bench result can have, in the order results are listed."""
RUNTIMES: tuple[str, ...] = ("pytorch", "llama.cpp")
"""What ``bench --runtime`` takes: what runs the workload (``llamacpp`` is accepted for ``llama.cpp``)."""
RUNTIME_ALIASES: dict[str, str] = {"llamacpp": "llama.cpp", "llama-cpp": "llama.cpp", "torch": "pytorch"}
TABULAR_RUNTIMES: tuple[str, ...] = ("xgboost", "lightgbm", "scikit-learn", "cuml")
"""What ran a tabular workload (family ``tabular``: ``measure.tabular``), a bench result's ``runtime``: the library,
chosen by the workload and the device (never by ``--runtime``)."""
RESULT_RUNTIMES: tuple[str, ...] = (*RUNTIMES, *TABULAR_RUNTIMES)
"""Every runtime a bench result can have."""
TASKS: tuple[str, ...] = ("train", "infer", "decode")
"""decode = one generated token per sequence against a KV cache (decoder-only language models only); its
samples/s are tokens/s. ``dlgpu bench`` runs train and infer unless decode is asked for."""
DEFAULT_TASKS: tuple[str, ...] = ("train", "infer")
FINETUNE_TASK = "finetune"
"""``dlgpu bench --task finetune --method full|freeze|lora|qlora``: one optimizer step of fine-tuning an LLM or a BERT
encoder (``measure.finetune``), asked for explicitly: ``all`` and the default do not include it."""
BENCH_TASKS: tuple[str, ...] = (*TASKS, FINETUNE_TASK)
"""Every task a bench result can have."""
BENCH_TASK_CHOICES: tuple[str, ...] = (*BENCH_TASKS, "both", "all")
"""What ``bench --task`` takes: a task, ``both`` (train and infer) or ``all`` (train, infer and decode: not
finetune, which is asked for by name)."""
SOURCES: tuple[str, ...] = ("own", "buy", "rent")
"""Where an advise candidate comes from: this machine's devices, catalog GPUs to buy, cloud instances to rent."""
RUN_KINDS: tuple[str, ...] = ("bench", "predict", "advise", "probe")
"""The kinds of run the results store keeps (``probe``: this machine's measured ceilings, ``dlgpu probe``)."""
