// Every node of one graph, in extended label order.
// $graph: graph name.
MATCH (n:Label)
WHERE n.graph = $graph
RETURN n.name AS name, n.idx AS idx, n.source_id AS source_id, n.is_label AS is_label
ORDER BY idx
