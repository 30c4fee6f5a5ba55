// Nodes stored before they were told apart (an older semattack-bench) get :DatasetLabel or
// :Abstract now, as load_nodes.neo4j.cypher gives them; once done this matches nothing.
MATCH (n:Label)
WHERE NOT n:DatasetLabel AND NOT n:Abstract
FOREACH (_ IN CASE WHEN n.is_label THEN [1] ELSE [] END | SET n:DatasetLabel)
FOREACH (_ IN CASE WHEN n.is_label THEN [] ELSE [1] END | SET n:Abstract)
