"""Ablation grids: a TOML file expands to RunConfigs that local workers or SLURM jobs train.

``spec`` reads and expands grid files, ``task`` is one run inside a worker (its lock, the runner, a ``failed``
marker for any error) and ``executors`` dispatches the runs to local workers or SLURM jobs (``--workers auto``
chooses how many); ``packing`` measures runs per hour on one device against the number of workers.

May import: bench.core, bench.data, methods, bench.evaluation, bench.training, bench.runs.
"""
