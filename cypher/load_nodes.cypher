// Create the nodes of one graph.
// $nodes: [{key, graph, name, idx, source_id, is_label}], key = graph + ':' + name.
UNWIND $nodes AS n
CREATE (:Label {key: n.key, graph: n.graph, name: n.name, idx: n.idx,
                source_id: n.source_id, is_label: n.is_label})
