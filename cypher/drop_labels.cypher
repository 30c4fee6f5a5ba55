// Delete the nodes (and so the IS_A edges) of one graph; other graphs are untouched.
// $graph: graph name.
MATCH (n:Label)
WHERE n.graph = $graph
DETACH DELETE n
