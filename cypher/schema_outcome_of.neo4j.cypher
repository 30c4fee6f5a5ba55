// Neo4j needs no relationship schema; an index on Outcome.run_id serves a run's lookups.
CREATE INDEX outcome_run IF NOT EXISTS FOR (o:Outcome) ON (o.run_id)
