// Parents (direct hypernyms) of the given nodes of one graph.
// $graph: graph name; $labels: node names. One row per node found.
MATCH (t:Label)
WHERE t.graph = $graph AND t.name IN $labels
OPTIONAL MATCH (t)-[:IS_A]->(x:Label)
RETURN t.name AS label,
       collect(DISTINCT CASE WHEN x IS NULL THEN NULL ELSE {idx: x.idx, name: x.name} END) AS nodes
