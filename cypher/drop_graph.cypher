// Delete the record (name, sha256) of one graph.
// $graph: graph name.
MATCH (g:Graph)
WHERE g.name = $graph
DELETE g
