"""ltbench: a benchmark harness for adversarial training on long-tailed image data."""

__version__ = "0.1.0"
