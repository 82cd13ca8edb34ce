"""The torch code of the built-in workloads, one module per family: networks, workload instance classes,
optimizers and batch helpers.

The family modules (``dlgpu.workloads.vision``, ``detection``, ...) declare the workloads and stay
torch-free at import; each factory imports from here when it builds. Import these modules only where torch
is wanted."""
