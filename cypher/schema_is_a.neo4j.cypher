// Neo4j needs no relationship schema; an index on Label.graph serves the per-graph lookups.
CREATE INDEX label_graph IF NOT EXISTS FOR (n:Label) ON (n.graph)
