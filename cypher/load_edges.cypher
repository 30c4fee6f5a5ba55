// Create the IS_A edges of one graph, child -> parent.
// $edges: [{child, parent}] as node keys (graph + ':' + name).
UNWIND $edges AS e
MATCH (c:Label {key: e.child}), (p:Label {key: e.parent})
CREATE (c)-[:IS_A]->(p)
