"""Dataset loaders by name. Importing this package registers the built-in ones."""

from bench.datasets.base import (  # noqa: F401
    DATASETS,
    MultiLabelDataset,
    create_dataset,
    list_datasets,
    register_dataset,
)
