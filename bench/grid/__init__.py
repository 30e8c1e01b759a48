"""Ablation grids: a TOML file expands to RunConfigs that local workers or SLURM jobs train.

``spec`` reads and expands grid files, ``locks`` keeps two workers off one run, ``task`` is one run inside a
worker and ``executors`` dispatches the runs.
"""
