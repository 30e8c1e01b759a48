"""``bench data fetch``: download a dataset into the data folder (on a networked machine)."""

from __future__ import annotations

import click

from bench.cli.options import data_root_option
from bench.data import datasets


@click.group("data")
def command() -> None:
    """Dataset files."""


@command.command("fetch")
@click.argument("dataset", type=click.Choice(list(datasets.DATASETS)))
@data_root_option
def fetch(dataset: str, data_root: str | None) -> None:
    """Download DATASET (torchvision format) and check that it loads."""
    data = datasets.load_dataset(dataset, data_root, download=True)
    click.echo(f"{dataset}: {data.x_train.shape[0]} train / {data.x_test.shape[0]} test images "
               f"in {datasets.data_root(data_root)}")
