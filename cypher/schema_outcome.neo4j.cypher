// One node per (run, attack, ε, τ, label): the label's results in a sweep (bench kg annotate).
CREATE CONSTRAINT outcome_key IF NOT EXISTS FOR (o:Outcome) REQUIRE o.key IS UNIQUE
