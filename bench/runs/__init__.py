"""One run end to end inside its folder (``runner``): train it (resuming), evaluate its checkpoint into
eval.json and mark it done; and ``bench eval`` of a trained run.

May import: bench.core, bench.data, bench.models, methods, bench.evaluation, bench.training.
"""
