// Delete the results hung off one graph's nodes: one run's ($run), or every run's ($run = '').
// $graph: graph name; $run: run id, or '' for all (a null parameter has no type in Ladybug).
MATCH (o:Outcome)
WHERE o.graph = $graph AND ($run = '' OR o.run_id = $run)
DETACH DELETE o
