// One run's results on a graph's nodes (bench kg annotate, bench kg view --run).
// $graph: graph name; $run: run id.
MATCH (o:Outcome)-[:OUTCOME_OF]->(l:Label)
WHERE o.graph = $graph AND o.run_id = $run
RETURN o.attack AS attack, o.eps AS eps, o.tau AS tau, l.name AS label, l.idx AS idx,
       o.pairs AS pairs, o.fr_n AS fr_n, o.fr_s AS fr_s, o.nt_pairs AS nt_pairs,
       o.nt_flips AS nt_flips, o.nt_rate AS nt_rate, o.nt_share AS nt_share, o.band AS band
ORDER BY attack, eps, tau, idx
