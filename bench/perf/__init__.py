"""``bench perf``: the training step's speed against a reference loop.

``benchmark`` times one whole training step of the real core against ``reference``, a loop written the way the
published REAT code is and kept only as this baseline.

May import: bench.core, bench.data, bench.models, methods, bench.evaluation, bench.training.
"""
