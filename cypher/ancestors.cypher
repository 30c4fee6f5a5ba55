// Proper ancestors of the given nodes of one graph (paths of 1 to {{MAX_DEPTH}} IS_A edges:
// Ladybug needs an upper bound, and loading refuses graphs deeper than {{MAX_DEPTH}}).
// $graph: graph name; $labels: node names. One row per node found.
MATCH (t:Label)
WHERE t.graph = $graph AND t.name IN $labels
OPTIONAL MATCH (t)-[:IS_A*1..{{MAX_DEPTH}}]->(x:Label)
RETURN t.name AS label,
       collect(DISTINCT CASE WHEN x IS NULL THEN NULL ELSE {idx: x.idx, name: x.name} END) AS nodes
