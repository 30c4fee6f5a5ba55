-- Views over the results tables (notes §2b). The store creates them in every results file;
-- `bench sql` and the tables read the versions in this file.

-- One row per (run, combination, attack, ε, τ): each value is a rate over the combination's
-- attacked images. FR_N = mean(success); FR_S = mean(success AND consistent); NT_R =
-- mean(ntr_share) over all attacked rows (failed rows hold 0); SSIM and RMSD = means over
-- the successful rows (NULL when none succeeded).
CREATE OR REPLACE VIEW combination_rates AS
SELECT
    r.run_id, r.combo_id, c.size, c.labels, r.attack, r.eps, r.tau,
    count(*) AS attacked,
    count(*) FILTER (WHERE r.success) AS succeeded,
    avg(r.success::DOUBLE) AS fr_n,
    avg((r.success AND r.consistent)::DOUBLE) AS fr_s,
    avg(r.ntr_share) AS nt_r,
    avg(r.ssim) FILTER (WHERE r.success) AS ssim,
    avg(r.rmsd) FILTER (WHERE r.success) AS rmsd,
    avg(r.iterations) AS iterations,
    avg(r.linf) AS linf,
    avg(r.l2) AS l2,
    sum(r.seconds) AS seconds
FROM results AS r
JOIN combinations AS c USING (run_id, combo_id)
GROUP BY r.run_id, r.combo_id, c.size, c.labels, r.attack, r.eps, r.tau;

-- The paper's numbers: mean and population standard deviation (numpy's np.std, ddof = 0)
-- of the per-combination rates over the combinations of one |Ω|, in %. SSIM two ways:
-- ssim_pooled pools the successful images of all combinations (the paper: one mean, no
-- std); ssim_mean/ssim_std average the per-combination means (combinations without a
-- success have none). n_planned counts the combinations of that |Ω| with images to attack,
-- n_empty those with no eligible image (recorded, never averaged in).
CREATE OR REPLACE VIEW rate_summary AS
WITH per_size AS (
    SELECT
        run_id, size, attack, eps, tau,
        count(*) AS n_combinations,
        100 * avg(fr_n) AS fr_n_mean, 100 * stddev_pop(fr_n) AS fr_n_std,
        100 * avg(fr_s) AS fr_s_mean, 100 * stddev_pop(fr_s) AS fr_s_std,
        100 * avg(nt_r) AS nt_r_mean, 100 * stddev_pop(nt_r) AS nt_r_std,
        avg(ssim) AS ssim_mean, stddev_pop(ssim) AS ssim_std,
        sum(attacked) AS n_attacked, sum(succeeded) AS n_succeeded
    FROM combination_rates
    GROUP BY run_id, size, attack, eps, tau
), pooled AS (
    SELECT r.run_id, c.size, r.attack, r.eps, r.tau,
           avg(r.ssim) FILTER (WHERE r.success) AS ssim_pooled,
           avg(r.rmsd) FILTER (WHERE r.success) AS rmsd_pooled
    FROM results AS r
    JOIN combinations AS c USING (run_id, combo_id)
    GROUP BY r.run_id, c.size, r.attack, r.eps, r.tau
), planned AS (
    SELECT run_id, size,
           count(*) FILTER (WHERE attacked > 0) AS n_planned,
           count(*) FILTER (WHERE eligible = 0) AS n_empty
    FROM combinations
    GROUP BY run_id, size
)
SELECT
    ru.dataset, ru.model_name, s.*, p.ssim_pooled, p.rmsd_pooled, pl.n_planned, pl.n_empty
FROM per_size AS s
JOIN pooled AS p USING (run_id, size, attack, eps, tau)
JOIN planned AS pl USING (run_id, size)
JOIN runs AS ru USING (run_id);

-- One row per run: what it is and how far it got.
CREATE OR REPLACE VIEW run_overview AS
SELECT
    ru.run_id, ru.dataset, ru.model_name, ru.graph_name, ru.attacks, ru.sizes, ru.eps, ru.tau,
    ru.images_per_combination, ru.preset, ru.shards, ru.shard_count,
    coalesce(c.n_combinations, 0) AS combinations,
    coalesce(c.n_complete, 0) AS complete,
    coalesce(r.n_rows, 0) AS rows,
    ru.created, ru.finished, ru.config_hash
FROM runs AS ru
LEFT JOIN (
    SELECT run_id, count(*) AS n_combinations, count(*) FILTER (WHERE complete) AS n_complete
    FROM combinations GROUP BY run_id
) AS c USING (run_id)
LEFT JOIN (SELECT run_id, count(*) AS n_rows FROM results GROUP BY run_id) AS r USING (run_id);

-- One row per (run, attack, ε, τ): its rows, how many predate results.flipped (n_unknown), and
-- every row's flipped labels together (n_flips). label_rates and `bench kg annotate` read it.
CREATE OR REPLACE VIEW setting_totals AS
SELECT
    run_id, attack, eps, tau,
    count(*) AS n_rows,
    count(*) FILTER (WHERE flipped IS NULL) AS n_unknown,
    coalesce(sum(len(flipped)), 0) AS n_flips
FROM results
GROUP BY run_id, attack, eps, tau;

-- One row per (run, attack, ε, τ, label) for every label that was a target or was flipped:
-- how the label fares as a target and as a bystander. Pooled over rows (image, Ω):
-- pairs = rows whose Ω holds the label; fr_n / fr_s = the share of those that succeeded /
-- succeeded consistently. nt_pairs = the other rows; nt_flips = rows whose attack changed the
-- label while it was outside Ψ (results.flipped, successful rows only, as NT_R counts);
-- nt_rate = nt_flips / nt_pairs; nt_share = the label's share of all such flips of the
-- setting. The nt_ columns are NULL when a row of the setting predates results.flipped.
-- `bench kg annotate` writes these numbers onto the graph store's nodes.
CREATE OR REPLACE VIEW label_rates AS
WITH pairs AS (
    SELECT r.run_id, r.attack, r.eps, r.tau, c.labels, r.success, r.consistent, r.flipped
    FROM results AS r
    JOIN combinations AS c USING (run_id, combo_id)
), as_target AS (
    SELECT run_id, attack, eps, tau, label,
           count(*) AS pairs,
           avg(success::DOUBLE) AS fr_n,
           avg((success AND consistent)::DOUBLE) AS fr_s
    FROM (SELECT run_id, attack, eps, tau, unnest(labels) AS label, success, consistent FROM pairs)
    GROUP BY run_id, attack, eps, tau, label
), as_bystander AS (
    SELECT run_id, attack, eps, tau, label, count(*) AS nt_flips
    FROM (SELECT run_id, attack, eps, tau, unnest(flipped) AS label FROM pairs)
    GROUP BY run_id, attack, eps, tau, label
), labels AS (
    SELECT run_id, attack, eps, tau, label FROM as_target
    UNION
    SELECT run_id, attack, eps, tau, label FROM as_bystander
)
SELECT
    l.run_id, l.attack, l.eps, l.tau, l.label,
    coalesce(t.pairs, 0) AS pairs, t.fr_n, t.fr_s,
    s.n_rows - coalesce(t.pairs, 0) AS nt_pairs,
    CASE WHEN s.n_unknown = 0 THEN coalesce(b.nt_flips, 0) END AS nt_flips,
    CASE WHEN s.n_unknown = 0 THEN coalesce(b.nt_flips, 0) / nullif(s.n_rows - coalesce(t.pairs, 0), 0) END
        AS nt_rate,
    CASE WHEN s.n_unknown = 0 THEN coalesce(b.nt_flips, 0) / nullif(s.n_flips, 0) END AS nt_share
FROM labels AS l
JOIN setting_totals AS s USING (run_id, attack, eps, tau)
LEFT JOIN as_target AS t USING (run_id, attack, eps, tau, label)
LEFT JOIN as_bystander AS b USING (run_id, attack, eps, tau, label);
