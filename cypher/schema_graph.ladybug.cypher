// One node per stored graph, with the sha256 of its content: loading is idempotent.
CREATE NODE TABLE IF NOT EXISTS Graph(
    name STRING,
    sha256 STRING,
    source STRING,
    n_nodes INT64,
    n_labels INT64,
    n_edges INT64,
    depth INT64,
    PRIMARY KEY (name)
)
