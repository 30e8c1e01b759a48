"""Adversarial training of one run, resumable epoch by epoch.

``config`` (RunConfig: everything that changes the trained weights, the presets and the run id), ``loop`` (one
loop for every method: the run's data, model, method and optimiser, the step, the epoch, the checkpoints),
``fold`` (BN folded into the convolutions for the training attack) and ``layout`` (memory format, fused SGD).

May import: bench.core, bench.data, bench.models, methods, bench.evaluation.
"""
