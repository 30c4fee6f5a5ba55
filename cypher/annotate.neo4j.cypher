// Hang one run's results off the label nodes (bench kg annotate); the band (Fragile,
// Contested, Robust, Untargeted) is also a node label, so Neo4j Browser colours it.
// $outcomes: [{key, label_key, graph, run_id, name, attack, eps, tau, pairs, fr_n, fr_s,
//              nt_pairs, nt_flips, nt_rate, nt_share, band}], label_key = graph + ':' + name.
UNWIND $outcomes AS x
MATCH (l:Label {key: x.label_key})
CREATE (o:Outcome {key: x.key, graph: x.graph, run_id: x.run_id, name: x.name, attack: x.attack,
                   eps: x.eps, tau: x.tau, pairs: x.pairs, fr_n: x.fr_n, fr_s: x.fr_s,
                   nt_pairs: x.nt_pairs, nt_flips: x.nt_flips, nt_rate: x.nt_rate,
                   nt_share: x.nt_share, band: x.band})-[:OUTCOME_OF]->(l)
SET o:$(x.band)
