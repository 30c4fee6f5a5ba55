// Record a stored graph and the sha256 of its content.
CREATE (:Graph {name: $graph, sha256: $sha256, source: $source,
                n_nodes: $n_nodes, n_labels: $n_labels, n_edges: $n_edges, depth: $depth})
