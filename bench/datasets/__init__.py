"""Dataset loaders by name. Importing this package registers the built-in ones."""

from bench.datasets.base import (  # noqa: F401
    DATASETS,
    MultiLabelDataset,
    create_dataset,
    list_datasets,
    register_dataset,
)
from bench.datasets.imagefiles import UndecodableImage, batches  # noqa: F401

# Importing the loader modules registers them.
from bench.datasets import folder, nus, openimages, stamps, voc  # noqa: F401  isort: skip
