"""``dlgpu doctor``: is this machine set up for deep learning? The frameworks installed (PyTorch's build and
devices; TensorFlow, JAX, Keras and what they see; retired frameworks recognised), the GPUs and their driver
(NVML), the CPU and how much of it this process may use, RAM, disk and OS (``gather``, ``frameworks``), judged by
pure checks with a fix each (``checks``). ``facts`` is the seam: tests judge fake facts.

Layer 2: imports ``devices``, ``workloads``, ``results``, ``home`` and ``units``, and never torch: each framework is
imported in a child Python (``frameworks``)."""

from .checks import Check, run_checks
from .diagnosis import Diagnosis, diagnose, judge
from .facts import Facts

__all__ = ["Check", "Diagnosis", "Facts", "diagnose", "judge", "run_checks"]
