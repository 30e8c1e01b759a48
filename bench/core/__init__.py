"""Foundations that every layer uses and that know nothing of training.

``errors`` (BenchError, InputError: one-line messages that name the fix), ``progress`` (bars and log lines),
``device`` (the ``--device`` option), ``precision`` (fp32 or bf16 autocast, picked per device), ``store`` (the
results folder: one folder per run, its files and states, atomic writes, checkpoints) and ``locks`` (one lock
file per run folder, so that two workers never train the same run).

May import: nothing.
"""
