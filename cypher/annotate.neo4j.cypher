// Hang one run's results off the label nodes (bench kg annotate); the band (Fragile,
// Contested, Robust, Untargeted) is also a node label, so Neo4j Browser colours it
// (FOREACH over a one-element list: the conditional SET that every Neo4j 5 accepts).
// $outcomes: [{key, label_key, graph, run_id, name, attack, eps, tau, pairs, fr_n, fr_s,
//              nt_pairs, nt_flips, nt_rate, nt_share, band}], label_key = graph + ':' + name.
UNWIND $outcomes AS x
MATCH (l:Label {key: x.label_key})
CREATE (o:Outcome {key: x.key, graph: x.graph, run_id: x.run_id, name: x.name, attack: x.attack,
                   eps: x.eps, tau: x.tau, pairs: x.pairs, fr_n: x.fr_n, fr_s: x.fr_s,
                   nt_pairs: x.nt_pairs, nt_flips: x.nt_flips, nt_rate: x.nt_rate,
                   nt_share: x.nt_share, band: x.band})-[:OUTCOME_OF]->(l)
FOREACH (_ IN CASE WHEN x.band = 'Fragile' THEN [1] ELSE [] END | SET o:Fragile)
FOREACH (_ IN CASE WHEN x.band = 'Contested' THEN [1] ELSE [] END | SET o:Contested)
FOREACH (_ IN CASE WHEN x.band = 'Robust' THEN [1] ELSE [] END | SET o:Robust)
FOREACH (_ IN CASE WHEN x.band = 'Untargeted' THEN [1] ELSE [] END | SET o:Untargeted)
