"""Fine-tuning on this CPU, measured and predicted side by side (issue 15): peak memory (target within 10%) and step
time (target within 20%) of full and LoRA fine-tuning of small catalog LLMs.

Measured: ``dlgpu bench --task finetune`` (``api.bench``: the real step with peft / torch.optim on random weights, the
harness's warm-up, raw samples and contention check). Its peak memory is the process's peak RSS over the steps
(``process-peak-rss``), which includes the Python interpreter and the libraries loaded before the model was built;
what the job itself holds is that peak minus the RSS just before the model was built
(``settings.memory.rss_before_build_bytes``), and that is what is compared with the prediction (``dlgpu predict
MODEL --task finetune -H local``: weights, trainable parameters, gradients, optimizer state, activations, logits,
workspace; no interpreter). Step time: the measured median against the roofline's prediction for this CPU.

Each configuration runs in its own Python process, so that one's freed memory does not hide in the next one's RSS.
Run it alone: other processes on a 2-core machine distort timings. Nothing is saved in the results database.

Usage: python benchmarks/finetune_memory.py [--models qwen3-0.6b] [--methods full lora] [--seq-len 128] [-b 1]
       [--json]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from typing import Any

from dlgpu import api

MEM_TARGET = 0.10
TIME_TARGET = 0.20


def one(model: str, method: str, seq_len: int, batch: int, budget_s: float) -> dict[str, Any]:
    overrides = {"seq_len": str(seq_len)}
    report = api.bench(workloads=[model], devices=["cpu"], tasks=["finetune"], method=method, batch_size=batch,
                       overrides=overrides, budget_s=budget_s, db=None, telemetry=False)
    r = next(x for x in report.results if x.task == "finetune")
    row: dict[str, Any] = {"model": model, "method": method, "seq_len": seq_len, "micro_batch": batch,
                           "status": r.status, "reason": r.reason}
    if r.status != "ok" or r.step_time is None or r.peak_mem_bytes is None:
        return row
    mem = (r.settings or {}).get("memory") or {}
    before = mem.get("rss_before_build_bytes")
    pred = api.predict_finetune(model, "local", method, overrides, batch)
    measured_net = None if before is None else r.peak_mem_bytes - int(before)
    row.update({
        "measured_step_s": r.step_time.median, "noisy": r.noisy, "contended": r.contended,
        "machine_speed": (r.settings or {}).get("machine_speed"),
        "measured_peak_rss_bytes": r.peak_mem_bytes, "rss_before_build_bytes": before,
        "measured_job_bytes": measured_net,
        "predicted_peak_bytes": pred["peak_mem_bytes"], "predicted_step_s": pred["step_time_s"],
        "memory_error_pct": None if not measured_net else 100 * (pred["peak_mem_bytes"] - measured_net) / measured_net,
        "time_error_pct": 100 * (pred["step_time_s"] - r.step_time.median) / r.step_time.median,
        "tensors": {k: mem.get(k) for k in ("base_weights_bytes", "trainable_weights_bytes", "gradients_bytes",
                                            "optimizer_state_bytes")},
        "predicted_breakdown": pred.get("breakdown"),
        "activations_source": pred.get("activations_source"),
        "profile_source": (pred.get("time") or {}).get("profile_source"),
        "time_basis": (pred.get("basis") or {}).get("time"),
    })
    return row


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", nargs="+", default=["qwen3-0.6b"])
    ap.add_argument("--methods", nargs="+", default=["full", "lora"])
    ap.add_argument("--seq-len", type=int, default=128)
    ap.add_argument("-b", "--micro-batch", type=int, default=1)
    ap.add_argument("--budget", type=float, default=20.0, help="timing budget per configuration, s")
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--one", nargs=2, metavar=("MODEL", "METHOD"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.one:  # a child: one configuration, its row as JSON
        print(json.dumps(one(args.one[0], args.one[1], args.seq_len, args.micro_batch, args.budget), default=str))
        return 0
    rows = []
    for m in args.models:
        for meth in args.methods:
            child = subprocess.run([sys.executable, __file__, "--one", m, meth, "--seq-len", str(args.seq_len),
                                    "-b", str(args.micro_batch), "--budget", str(args.budget)],
                                   capture_output=True, text=True, check=False)
            if child.returncode != 0:
                rows.append({"model": m, "method": meth, "status": "failed", "reason": child.stderr.strip()[-300:]})
                continue
            rows.append(json.loads(child.stdout.strip().splitlines()[-1]))
    if args.json:
        print(json.dumps(rows, indent=2, default=str))
        return 0
    gib = 2 ** 30
    print(f"{'model':12} {'method':6} {'job memory meas / pred (GiB)':>30} {'err':>7}  {'step meas / pred (s)':>22} "
          f"{'err':>7}  flags")
    for r in rows:
        if "measured_step_s" not in r:
            print(f"{r['model']:12} {r['method']:6} {r['status']}: {r['reason']}")
            continue
        speed = r.get("machine_speed") or {}
        slowed = (f"slowed {min(x for x in (speed.get('ratio_before'), speed.get('ratio_after')) if x):.0%}"
                  if speed.get("slowed") else "")
        flags = ",".join(f for f in ("noisy" if r["noisy"] else "", "contended" if r["contended"] else "", slowed) if f)
        mem_meas = r["measured_job_bytes"] / gib if r["measured_job_bytes"] else float("nan")
        print(f"{r['model']:12} {r['method']:6} {mem_meas:14.2f} / {r['predicted_peak_bytes'] / gib:5.2f}      "
              f"{r['memory_error_pct']:+6.1f}%  {r['measured_step_s']:10.3f} / {r['predicted_step_s']:7.3f}   "
              f"{r['time_error_pct']:+6.1f}%  {flags}")
    ok = [r for r in rows if "measured_step_s" in r]
    mem_ok = sum(1 for r in ok if r["memory_error_pct"] is not None and abs(r["memory_error_pct"]) <= 100 * MEM_TARGET)
    time_ok = sum(1 for r in ok if abs(r["time_error_pct"]) <= 100 * TIME_TARGET)
    print(f"memory within {MEM_TARGET:.0%}: {mem_ok}/{len(ok)}; step time within {TIME_TARGET:.0%}: "
          f"{time_ok}/{len(ok)}")
    sources = sorted({(r.get("activations_source"), r.get("profile_source")) for r in ok})
    print("predicted from: " + "; ".join(f"activations {a}, step profile {p}" for a, p in sources))
    return 0


if __name__ == "__main__":
    sys.exit(main())
