// The stored graphs, with the sha256 of their content.
MATCH (g:Graph)
RETURN g.name AS name, g.sha256 AS sha256, g.source AS source,
       g.n_nodes AS n_nodes, g.n_labels AS n_labels, g.n_edges AS n_edges, g.depth AS depth
ORDER BY name
