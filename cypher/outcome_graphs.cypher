// The graphs a run's results are hung on (bench kg view --run).
// $run: run id.
MATCH (o:Outcome)
WHERE o.run_id = $run
RETURN DISTINCT o.graph AS graph
ORDER BY graph
