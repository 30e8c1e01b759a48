"""Image data on the device: what a dataset is and how a long-tailed run sees it.

``datasets`` (the registry and ``load_dataset``), the sources ``fashion_mnist``, ``cifar`` (which also writes
synthetic CIFAR-10 files) and ``tiny_imagenet`` (files to ``images.ImageData``), ``longtail`` (the exponential
class profile, the long-tailed subset, the stratified first-n test images) and ``augment`` / ``policy_augment``
(crop, flip, RandAugment, AutoAugment and the epoch's batches).

May import: bench.core.
"""
