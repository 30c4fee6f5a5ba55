// (outcome)-[:OUTCOME_OF]->(label): a run's results hang off the node they describe.
CREATE REL TABLE IF NOT EXISTS OUTCOME_OF(FROM Outcome TO Label)
