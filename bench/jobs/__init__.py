"""Whole jobs built on the sweep, the training and the results: the offline demo (``demo``:
train if needed, sweep, tables, plots, report), the GPU check (``gpu_check``) and the sweep's
performance harnesses (``sweep_perf``). Nothing below this floor imports it."""
