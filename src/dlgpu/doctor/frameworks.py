"""The deep-learning frameworks installed here and what they see.

Whether a framework is installed, and its version, come from ``importlib.util.find_spec`` and
``importlib.metadata`` without importing it. What it *sees* (PyTorch's build and devices, TensorFlow's, JAX's and
Keras's accelerators) needs it imported, and that is done in a child Python per framework, all at once, each with
a timeout: importing TensorFlow takes seconds, and a broken install (a missing CUDA library, a crash in a driver
call) must fail the check rather than dlgpu. dlgpu's own process never imports any of them.

``torch_facts`` reads a torch module handed to it (the child hands the real one; tests a fake)."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from importlib import metadata
from pathlib import Path
from typing import Any

from .facts import Framework, Gpu, Torch

PROBE_TIMEOUT_S = 120.0
"""How long one framework's child may take to import it and answer (a cold import of TensorFlow can take tens of
seconds on a slow disk)."""

MARK = "@@dlgpu-doctor "
"""Prefixes the child's one answer line, so that whatever else the framework prints is ignored."""

OTHERS: tuple[tuple[str, str, tuple[str, ...]], ...] = (
    ("TensorFlow", "tensorflow", ("tensorflow", "tensorflow-cpu", "tensorflow-macos", "tensorflow-intel",
                                  "tf-nightly")),
    ("JAX", "jax", ("jax",)),
    ("Keras", "keras", ("keras", "keras-nightly")),
)
"""(name, module, distributions that install it) of the maintained frameworks besides PyTorch."""

RETIRED: tuple[tuple[str, str, tuple[str, ...], str], ...] = (
    ("MXNet", "mxnet", ("mxnet", "mxnet-cu112", "mxnet-cu110", "mxnet-cu102", "mxnet-mkl"),
     "no longer maintained upstream: Apache MXNet was retired to the Apache Attic in 2023 "
     "(https://attic.apache.org/projects/mxnet.html)"),
    ("Caffe", "caffe", ("caffe",),
     "no longer maintained upstream: BVLC Caffe's last release is 1.0 (April 2017) and its repository "
     "(https://github.com/BVLC/caffe) has not been developed since; Caffe2 was merged into PyTorch in 2018"),
    ("Theano", "theano", ("Theano", "theano"),
     "no longer maintained upstream: MILA ended Theano's development after 1.0 (Y. Bengio, \"MILA and the future "
     "of Theano\", theano-users list, 28 September 2017); its fork lives on as PyTensor"),
    ("Chainer", "chainer", ("chainer",),
     "no longer maintained upstream: Preferred Networks moved to PyTorch and put Chainer in maintenance-only "
     "mode with v7 (announcement of 5 December 2019, https://chainer.org)"),
    ("CNTK", "cntk", ("cntk", "cntk-gpu"),
     "no longer maintained upstream: Microsoft's 2.7 (2019) is CNTK's last release "
     "(https://github.com/microsoft/CNTK)"),
)
"""(name, module, distributions, why it is retired, with the source) of frameworks recognised but no longer
maintained."""

TORCH_PROBE = f"""
import json, sys
import torch
from dlgpu.doctor.frameworks import torch_facts
print({MARK!r} + json.dumps(torch_facts(torch).to_dict()))
"""

PROBES: dict[str, str] = {
    "tensorflow": f"""
import os
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
import json
import tensorflow as tf
acc = [f"{{d.device_type}}:{{d.name}}" for d in tf.config.list_physical_devices() if d.device_type != "CPU"]
print({MARK!r} + json.dumps({{"version": tf.__version__, "accelerators": acc}}))
""",
    "jax": f"""
import json
import jax
acc = [f"{{d.platform}}:{{getattr(d, 'device_kind', d)}}" for d in jax.devices() if d.platform != "cpu"]
print({MARK!r} + json.dumps({{"version": jax.__version__, "accelerators": acc, "backend": jax.default_backend()}}))
""",
    "keras": f"""
import os
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
import json
import keras
backend = keras.config.backend() if hasattr(keras, "config") else keras.backend.backend()
if backend == "tensorflow":
    import tensorflow as tf
    acc = [f"{{d.device_type}}:{{d.name}}" for d in tf.config.list_physical_devices() if d.device_type != "CPU"]
elif backend == "jax":
    import jax
    acc = [f"{{d.platform}}:{{getattr(d, 'device_kind', d)}}" for d in jax.devices() if d.platform != "cpu"]
elif backend == "torch":
    import torch
    acc = [f"cuda:{{torch.cuda.get_device_name(i)}}" for i in range(torch.cuda.device_count())]
else:
    acc = []
print({MARK!r} + json.dumps({{"version": keras.__version__, "accelerators": acc, "backend": backend}}))
""",
}
"""The child's script per framework: one ``MARK`` line with its version and the non-CPU devices it sees."""


def dist_version(dists: Sequence[str]) -> str | None:
    for d in dists:
        try:
            return metadata.version(d)
        except metadata.PackageNotFoundError:
            continue
    return None


def installed(module: str) -> bool:
    """Whether ``module`` can be imported, found without importing it."""
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


def torch_facts(torch: Any) -> Torch:
    """PyTorch's build and devices, read from ``torch`` (the module; a fake in tests). Each read that a build or
    a fake lacks stays None."""
    from dlgpu.devices.detect import probe_cuda, probe_mps, probe_xpu

    def read(f: Any, *args: Any) -> Any:
        try:
            return f(*args)
        except Exception:
            return None

    version = getattr(torch, "version", None)
    backends = getattr(torch, "backends", None)
    cudnn = getattr(backends, "cudnn", None)
    mps = getattr(backends, "mps", None)
    mkldnn = getattr(backends, "mkldnn", None)
    found, cuda_reason = probe_cuda(torch)
    if not found and (getattr(version, "cuda", None) or getattr(version, "hip", None)):
        try:  # a GPU build that sees no GPU: CUDA's own error says why (no driver, driver too old, none visible)
            torch.cuda.init()
        except Exception as exc:
            cuda_reason = f"{cuda_reason}; torch.cuda.init(): {exc}"
    gpus = [Gpu(index=int(d.id.split(":")[1]), name=d.name, vendor="amd" if d.backend == "rocm" else "nvidia",
                source="torch", memory_bytes=d.memory_bytes,
                compute_capability=None if d.backend == "rocm" else d.compute_capability) for d in found]
    xpus, _ = probe_xpu(torch) if getattr(torch, "xpu", None) is not None else ([], None)
    gpus += [Gpu(index=int(d.id.split(":")[1]), name=d.name, vendor="intel", source="torch",
                 memory_bytes=d.memory_bytes) for d in xpus]
    get_arch_list = getattr(getattr(torch, "cuda", None), "get_arch_list", None)
    return Torch(
        installed=True,
        version=str(getattr(torch, "__version__", "")) or None,
        cuda=getattr(version, "cuda", None),
        hip=getattr(version, "hip", None),
        cudnn=read(cudnn.version) if cudnn is not None and hasattr(cudnn, "version") else None,
        cuda_available=bool(found),
        cuda_reason=cuda_reason,
        gpus=tuple(gpus),
        arch_list=tuple(read(get_arch_list) or ()) if get_arch_list else (),
        mps_built=read(mps.is_built) if mps is not None and hasattr(mps, "is_built") else None,
        mps_available=bool(probe_mps(torch)[0]) if mps is not None else None,
        xpu_available=bool(xpus) if getattr(torch, "xpu", None) is not None else None,
        mkldnn=read(mkldnn.is_available) if mkldnn is not None and hasattr(mkldnn, "is_available") else None,
        num_threads=read(torch.get_num_threads) if hasattr(torch, "get_num_threads") else None,
        num_interop_threads=read(torch.get_num_interop_threads) if hasattr(torch, "get_num_interop_threads")
        else None,
    )


def torch_from_dict(d: Mapping[str, Any]) -> Torch:
    """The ``Torch`` a child printed (``Torch.to_dict``)."""
    gpu_fields = {f for f in Gpu.__dataclass_fields__}
    gpus = tuple(Gpu(**{k: v for k, v in g.items() if k in gpu_fields}) for g in d.get("gpus") or ())
    fields = {f for f in Torch.__dataclass_fields__} - {"gpus", "arch_list", "installed"}
    kwargs: dict[str, Any] = {k: d[k] for k in fields if k in d}
    return Torch(installed=bool(d.get("installed", True)), gpus=gpus, arch_list=tuple(d.get("arch_list") or ()),
                 **kwargs)


def _child_env() -> dict[str, str]:
    """This environment, with dlgpu's own source importable in the child however this process found it."""
    env = dict(os.environ)
    here = str(Path(__file__).resolve().parents[2])  # the directory holding the dlgpu package
    env["PYTHONPATH"] = os.pathsep.join(p for p in (here, env.get("PYTHONPATH")) if p)
    return env


def _why_failed(rc: int, stderr: str) -> str:
    lines = [ln.strip() for ln in stderr.splitlines() if ln.strip()]
    if rc < 0:
        return f"the child importing it was killed by signal {-rc}" + (f" ({lines[-1]})" if lines else "")
    return lines[-1] if lines else f"the child importing it exited with code {rc}"


def run_probes(scripts: Mapping[str, str], timeout_s: float = PROBE_TIMEOUT_S,
               python: str = sys.executable) -> dict[str, tuple[dict[str, Any] | None, str | None]]:
    """Each script in its own child Python, all at once: name -> (the answer, None) or (None, why not)."""
    procs = {}
    env = _child_env()
    for name, script in scripts.items():
        procs[name] = subprocess.Popen([python, "-c", script], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                       stdin=subprocess.DEVNULL, text=True, env=env)
    deadline = time.monotonic() + timeout_s
    out: dict[str, tuple[dict[str, Any] | None, str | None]] = {}
    for name, proc in procs.items():
        try:
            stdout, stderr = proc.communicate(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.communicate()
            out[name] = None, f"importing it took longer than {timeout_s:g} s (killed)"
            continue
        answer = [ln[len(MARK):] for ln in stdout.splitlines() if ln.startswith(MARK)]
        if proc.returncode == 0 and answer:
            try:
                out[name] = json.loads(answer[-1]), None
            except ValueError as exc:
                out[name] = None, f"unreadable answer from the child: {exc}"
        else:
            out[name] = None, _why_failed(proc.returncode, stderr)
    return out


def gather_frameworks(probe_others: bool = True,
                      timeout_s: float = PROBE_TIMEOUT_S) -> tuple[Torch, tuple[Framework, ...]]:
    """PyTorch and every other framework (maintained ones probed for accelerators unless ``probe_others`` is
    False; retired ones recognised only)."""
    scripts: dict[str, str] = {}
    if installed("torch"):
        scripts["torch"] = TORCH_PROBE
    present = {module: installed(module) for _, module, _ in OTHERS}
    if probe_others:
        scripts.update({m: PROBES[m] for m, yes in present.items() if yes})
    answers = run_probes(scripts, timeout_s) if scripts else {}
    if "torch" not in scripts:
        torch = Torch(installed=False)
    else:
        answer, error = answers["torch"]
        torch = torch_from_dict(answer) if answer is not None else Torch(
            installed=True, version=dist_version(("torch",)), error=error)
    others = []
    for name, module, dists in OTHERS:
        version = dist_version(dists)
        if not present[module]:
            others.append(Framework(name, module, installed=False))
            continue
        answer, error = answers.get(module, (None, None))
        if answer is None:
            others.append(Framework(name, module, True, version, error=error,
                                    note="" if error else "not imported (--quick): accelerators not probed"))
        else:
            others.append(Framework(name, module, True, answer.get("version") or version,
                                    accelerators=tuple(answer.get("accelerators") or ()),
                                    backend=answer.get("backend") if module == "keras" else None))
    for name, module, dists, why in RETIRED:
        if installed(module):
            others.append(Framework(name, module, True, dist_version(dists), retired=True, note=why))
    return torch, tuple(others)
