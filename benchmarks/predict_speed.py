"""Prediction speed: one workload predicted on every GPU in the catalog.

Target (issue #3): under 5 s on a 2-core laptop CPU, including the one fake-tensor trace of the step.
Usage: python benchmarks/predict_speed.py [--workload resnet50] [--precision fp32] [--batch-size 256]
"""

from __future__ import annotations

import argparse
import time

from dlgpu import api
from dlgpu.catalog import load_catalog
from dlgpu.errors import BadInput


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--workload", default="resnet50")
    ap.add_argument("--precision", default="fp32")
    ap.add_argument("--task", default="train")
    ap.add_argument("--batch-size", type=int, default=None)
    args = ap.parse_args()

    import dlgpu.analyze.trace  # noqa: F401
    from dlgpu.workloads import get_workload

    get_workload(args.workload)  # imports torchvision/transformers: a one-off cost, reported apart

    gpus = load_catalog().gpus
    t0 = time.perf_counter()
    done, refused = 0, 0
    for gpu in gpus:
        try:
            api.predict(args.workload, gpu.id, args.precision, args.task, args.batch_size)
            done += 1
        except BadInput:
            refused += 1  # e.g. bf16 on a GPU without it, or a catalog row without bandwidth
    dt = time.perf_counter() - t0
    print(f"{args.workload} {args.task} {args.precision}: {done} GPUs predicted, {refused} refused, "
          f"in {dt:.2f} s (target < 5 s)")


if __name__ == "__main__":
    main()
