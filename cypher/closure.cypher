// Each given node's index and its proper ancestors and proper descendants ({idx, name}),
// in one round trip: what every target combination's closure is combined from, on tensors
// (kg/stores/base.py, GraphStore.combination_masks), so each label is walked once however
// many combinations it belongs to.
// $graph: graph name; $labels: node names. One row per node found.
MATCH (m:Label)
WHERE m.graph = $graph AND m.name IN $labels
OPTIONAL MATCH (m)-[:IS_A*1..{{MAX_DEPTH}}]->(a:Label)
WITH m, collect(DISTINCT CASE WHEN a IS NULL THEN NULL ELSE {idx: a.idx, name: a.name} END) AS up
OPTIONAL MATCH (d:Label)-[:IS_A*1..{{MAX_DEPTH}}]->(m)
RETURN m.name AS label, m.idx AS idx, up,
       collect(DISTINCT CASE WHEN d IS NULL THEN NULL ELSE {idx: d.idx, name: d.name} END) AS down
