// One node per (run, attack, ε, τ, label): the label's results in a sweep (bench kg annotate).
// key = graph:run:attack:ε:τ:label. As a target: pairs, fr_n, fr_s; as a bystander: nt_pairs,
// nt_flips, nt_rate, nt_share (results/views.sql, label_rates). band: Fragile (fr_n >= 2/3),
// Contested, Robust (fr_n < 1/3) or Untargeted (never a target).
CREATE NODE TABLE IF NOT EXISTS Outcome(
    key STRING,
    graph STRING,
    run_id STRING,
    name STRING,
    attack STRING,
    eps DOUBLE,
    tau DOUBLE,
    pairs INT64,
    fr_n DOUBLE,
    fr_s DOUBLE,
    nt_pairs INT64,
    nt_flips INT64,
    nt_rate DOUBLE,
    nt_share DOUBLE,
    band STRING,
    PRIMARY KEY (key)
)
