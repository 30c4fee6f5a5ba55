// (child)-[:IS_A]->(parent): "dog IS_A canine". Edges only join nodes of one graph.
CREATE REL TABLE IF NOT EXISTS IS_A(FROM Label TO Label)
