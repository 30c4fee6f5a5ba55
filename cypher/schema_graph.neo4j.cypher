// One node per stored graph, with the sha256 of its content: loading is idempotent.
CREATE CONSTRAINT graph_name IF NOT EXISTS FOR (g:Graph) REQUIRE g.name IS UNIQUE
