// Every node of one graph with the indices of its parents, in extended label order: what
// GraphStore.content rebuilds the graph's sha256 and its node and edge counts from, to check
// a stored copy against its record.
// $graph: graph name.
MATCH (n:Label)
WHERE n.graph = $graph
OPTIONAL MATCH (n)-[:IS_A]->(p:Label)
RETURN n.idx AS idx, n.name AS name, n.source_id AS source_id, n.is_label AS is_label,
       collect(p.idx) AS parents
ORDER BY idx
