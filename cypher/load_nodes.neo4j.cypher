// Create the nodes of one graph (Neo4j). Each keeps the label Label, which every query
// matches, and gets a second one for reading in Neo4j Browser, which colours nodes by label
// (neo4j/style.grass): DatasetLabel (one of the dataset's own labels, is_label true) or
// Abstract (a node above them, is_label false). FOREACH over a one-element list is the
// conditional SET that every Neo4j 5 accepts.
// $nodes: [{key, graph, name, idx, source_id, is_label}], key = graph + ':' + name.
UNWIND $nodes AS n
CREATE (x:Label {key: n.key, graph: n.graph, name: n.name, idx: n.idx,
                 source_id: n.source_id, is_label: n.is_label})
FOREACH (_ IN CASE WHEN n.is_label THEN [1] ELSE [] END | SET x:DatasetLabel)
FOREACH (_ IN CASE WHEN n.is_label THEN [] ELSE [1] END | SET x:Abstract)
