"""llama.cpp decode and prefill on this machine's CPU, measured on synthetic GGUFs of catalog models (issue 14).

For each model and weight type: writes a GGUF with random weights (``dlgpu.measure.llamacpp.write_synthetic_gguf``;
nothing downloaded), measures prefill and decode tokens/s with llama-cpp-python (``measure_llamacpp``: llama.cpp's
own counters), and prints them next to the file size and ``llm.formats.weight_bytes`` for the same format, with the
decode rate's implied weight-read bandwidth (file bytes x tokens/s), and beside each figure dlgpu's prediction for
this CPU (``dlgpu.llm.cpu``) fitted on the shipped measurements of this machine without that model (the
leave-one-model-out error a user gets for a model never measured here; another machine has no shipped
measurements, so nothing is predicted there). Needs the ``dlgpu[llamacpp]`` extra.
Run it alone: other processes on a 2-core machine
distort timings.

Usage: python benchmarks/llamacpp_cpu.py [--models llama-3.2-1b] [--types q8_0 q4_0] [-p 128] [-n 32] [--json]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from dlgpu.llm.architectures import get_arch
from dlgpu.llm.cpu import CpuRun, fit_cpu, load_measured, runs_from_measured
from dlgpu.llm.formats import get_format, weight_bytes
from dlgpu.measure.llamacpp import available, measure_llamacpp, write_synthetic_gguf


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", nargs="+", default=["llama-3.2-1b"])
    ap.add_argument("--types", nargs="+", default=["q8_0", "q4_0"])
    ap.add_argument("-p", "--prompt", type=int, default=128)
    ap.add_argument("-n", "--output", type=int, default=32)
    ap.add_argument("-t", "--threads", type=int, default=None)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    why = available()
    if why:
        print(f"llama.cpp not available: {why}", file=sys.stderr)
        return 1
    rows: list[dict[str, Any]] = []
    shipped = load_measured()
    same = None  # the shipped runs, if they were made on this CPU with these threads
    with tempfile.TemporaryDirectory() as tmp:
        for model in args.models:
            arch = get_arch(model)
            for wtype in args.types:
                path = Path(tmp) / f"{model}-{wtype}.gguf"
                t0 = time.perf_counter()
                write_synthetic_gguf(arch, path, wtype)
                written_s = time.perf_counter() - t0
                r = measure_llamacpp(path, args.prompt, args.output, threads=args.threads, repeats=args.repeats)
                predicted = weight_bytes(arch, get_format(wtype))
                r.update(model=model, weight_type=wtype, weight_bytes=predicted, write_s=round(written_s, 1),
                         file_vs_weight_bytes=r["file_bytes"] / predicted,
                         decode_gb_per_s=r["file_bytes"] * r["decode_tokens_per_s"] / 1e9)
                path.unlink()
                if same is None:
                    from dlgpu.catalog.local import this_cpu

                    m = shipped.get("machine") or {}
                    same = m.get("cpu") == this_cpu()[0] and int(m.get("threads") or 0) == r["n_threads"]
                others = [x for x in runs_from_measured(shipped) if x.model != model] if same else []
                if others:
                    fit = fit_cpu(others)
                    for phase, key in (("decode", "decode_tokens_per_s"), ("prefill", "prefill_tokens_per_s")):
                        run = CpuRun(model, wtype, phase, args.prompt, args.output if phase == "decode" else 0, 1.0)
                        pred = fit.tokens_per_s(model, wtype, phase, run.prompt, run.output)
                        r[f"predicted_{key}"] = pred
                        r[f"{phase}_error_pct"] = 100 * (pred - r[key]) / r[key]
                rows.append(r)
                if not args.json:
                    print(f"{model:14} {wtype:5} file {r['file_bytes'] / 1e9:6.3f} GB  weight_bytes "
                          f"{predicted / 1e9:6.3f} GB ({r['file_vs_weight_bytes']:.3f}x)  prefill "
                          f"{r['prefill_tokens_per_s']:8.1f} tok/s  decode {r['decode_tokens_per_s']:7.2f} tok/s "
                          f"(~{r['decode_gb_per_s']:.1f} GB/s)  t={r['n_threads']}  written in {written_s:.0f} s"
                          + (f"\n{'':20} predicted (fitted without {model}): prefill "
                             f"{r['predicted_prefill_tokens_per_s']:8.1f} ({r['prefill_error_pct']:+.1f}%)  decode "
                             f"{r['predicted_decode_tokens_per_s']:7.2f} ({r['decode_error_pct']:+.1f}%)"
                             if "predicted_decode_tokens_per_s" in r else ""), flush=True)
    if rows and not args.json:
        print(f"llama-cpp-python {rows[0]['llama_cpp_python']}; same test as: {rows[0]['llama_bench']}")
    if args.json:
        print(json.dumps(rows, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
