"""Tabular training time predicted where it was not measured: gradient-boosted trees (XGBoost, LightGBM, CatBoost,
H2O) on any catalog CPU or GPU, from rows x features x trees x depth (``model``), fitted to published CPU and GPU
training times (``published``, ``calibration``: GBM-perf's airline benchmark) and to what dlgpu measured on this CPU
(``local``); ``predict`` makes the ``dlgpu.tabular-predict/1`` document. Layer 2: catalog, results and errors below
it; no torch."""
