"""The attack suite and its numbers; it returns records and writes no files.

``settings`` (which attacks, on how many test images, of which checkpoint), ``attacks`` (PGD with a pluggable
loss, FGSM, the CW margin), ``graphed`` (the same PGD on static buffers per batch shape, captured as CUDA
graphs on CUDA), ``autoattack`` (the pyautoattack adapter and how many images one of its calls takes),
``suite`` (every attack through the method's inference path, the eval.json record, the per-epoch check),
``protocol`` (what a stored result was measured under: radius, step, precision, test images; eval.json's
results grouped by it) and ``metrics`` (per-class accuracy, head/mid/tail, worst class, balanced robustness,
per-image results).

May import: bench.core, bench.data, bench.models.
"""
