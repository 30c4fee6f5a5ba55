// For every combination of labels, in one round trip: its members and the union of their
// proper ancestors and of their proper descendants (the nodes a consistent target set
// h(Ω) may reach). Each label's ancestors and descendants are found once and shared by
// all the combinations it belongs to.
// $graph: graph name; $labels: the distinct member names;
// $combos: [{i, members}], i numbers the combinations, members are node names.
MATCH (m:Label)
WHERE m.graph = $graph AND m.name IN $labels
OPTIONAL MATCH (m)-[:IS_A*1..30]->(a:Label)
WITH m, collect(DISTINCT CASE WHEN a IS NULL THEN NULL ELSE {idx: a.idx, name: a.name} END) AS up
OPTIONAL MATCH (d:Label)-[:IS_A*1..30]->(m)
WITH m, up, collect(DISTINCT CASE WHEN d IS NULL THEN NULL ELSE {idx: d.idx, name: d.name} END) AS down
UNWIND $combos AS combo
WITH combo, m, up, down
WHERE m.name IN combo.members
WITH combo.i AS i, collect({idx: m.idx, name: m.name}) AS members, collect(up) AS ups, collect(down) AS downs
RETURN i, members,
       list_distinct(list_reduce(ups, (x, y) -> list_concat(x, y))) AS ancestors,
       list_distinct(list_reduce(downs, (x, y) -> list_concat(x, y))) AS descendants
ORDER BY i
