-- Views over the results tables (notes §2b). The store creates them in every results file;
-- `bench sql` and the tables read the versions in this file.

-- The worst case over a run's attacks, per pair (AutoAttack's ensemble): one row per (run,
-- combination Ω, image, ε), attack 'worst-case', τ = the run's first τ (runs.tau[1]). The
-- candidates are the pair's rows at that ε over every attack and every τ of the run, but only
-- rows inside the threat model, linf <= eps + 1e-6 (ℓ∞ in [0, 1] pixel units; the 1e-6 covers
-- float32 rounding of a projected image): ML-DP and MLA-LP are not held to ε, so their rows
-- count only where they stayed inside the ball. The pair is fooled (success) if any candidate
-- succeeded. The deciding row is, among the successful candidates, a consistent one first
-- (success AND consistent), then the lowest ntr_share, then by attack name (alphabetical),
-- then by τ (ascending): consistent, ntr_share, ssim, rmsd, success_iteration, linf, l2 and flipped
-- are its values, decided_by / decided_tau name it. A pair no candidate fooled: success and
-- consistent false, ntr_share 0 (as failed rows hold), ssim, rmsd, success_iteration, linf, l2 and
-- decided_by NULL, flipped empty (NULL if a row of the pair predates results.flipped).
-- Against a defense with a detector (results.detected not NULL), an undetected success is
-- preferred over a detected one before anything else, and detected is the deciding row's.
-- seconds = every row of the pair at that ε (every attack and τ: what the ensemble cost).
-- n_attacks = the run's distinct attacks at that ε; rated_rows (hence combination_rates,
-- rate_summary, the tables) takes the worst case only where n_attacks >= 2. Pseudo-rows live
-- in these views only, never in the results table (run_overview, setting_totals, label_rates,
-- resume and merges count real rows).
CREATE OR REPLACE VIEW worst_case AS
WITH pairs AS (
    SELECT run_id, combo_id, image_id, eps,
           sum(seconds) AS seconds,
           count(*) FILTER (WHERE flipped IS NULL) AS n_unknown
    FROM results
    GROUP BY run_id, combo_id, image_id, eps
), decided AS (
    SELECT run_id, combo_id, image_id, eps, attack, tau, consistent, ntr_share, ssim, rmsd,
           success_iteration, linf, l2, flipped, detected
    FROM results
    WHERE success AND linf <= eps + 1e-6
    QUALIFY row_number() OVER (
        PARTITION BY run_id, combo_id, image_id, eps
        ORDER BY coalesce(detected, false), consistent DESC, ntr_share, attack, tau
    ) = 1
), settings AS (
    SELECT run_id, eps, count(DISTINCT attack) AS n_attacks FROM results GROUP BY run_id, eps
)
SELECT
    p.run_id, p.combo_id, p.image_id, 'worst-case' AS attack, p.eps, ru.tau[1] AS tau,
    d.attack IS NOT NULL AS success,
    coalesce(d.consistent, false) AS consistent,
    coalesce(d.ntr_share, 0.0) AS ntr_share,
    d.ssim, d.rmsd, d.success_iteration, d.linf, d.l2, p.seconds,
    CASE WHEN d.attack IS NOT NULL THEN d.flipped WHEN p.n_unknown = 0 THEN []::TEXT[] END AS flipped,
    d.attack AS decided_by, d.tau AS decided_tau, s.n_attacks, d.detected
FROM pairs AS p
JOIN settings AS s USING (run_id, eps)
LEFT JOIN decided AS d USING (run_id, combo_id, image_id, eps)
JOIN runs AS ru ON ru.run_id = p.run_id;

-- The rows the rates are computed from: every results row, plus the worst_case pseudo-rows of
-- the (run, ε) settings with at least two attacks.
CREATE OR REPLACE VIEW rated_rows AS
SELECT run_id, combo_id, image_id, attack, eps, tau, success, consistent, ntr_share, ssim, rmsd,
       success_iteration, linf, l2, seconds, detected
FROM results
UNION ALL
SELECT run_id, combo_id, image_id, attack, eps, tau, success, consistent, ntr_share, ssim, rmsd,
       success_iteration, linf, l2, seconds, detected
FROM worst_case
WHERE n_attacks >= 2;

-- One row per (run, combination, attack, ε, τ): each value is a rate over the combination's
-- attacked images. FR_N = mean(success); FR_S = mean(success AND consistent); NT_R =
-- mean(ntr_share) over all attacked rows (failed rows hold 0); SSIM and RMSD = means over
-- the successful rows (NULL when none succeeded). Read from rated_rows: a run with two or more
-- attacks at an ε also gets attack 'worst-case' (worst_case above; its attacked = the pairs
-- any attack reached). Against a detector: detection = the share of the successful rows it
-- rejected; fr_n_after / fr_s_after = FR_N / FR_S counting only undetected successes (NULL
-- without a detector).
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
    avg(r.success_iteration) AS success_iteration,
    avg(r.linf) AS linf,
    avg(r.l2) AS l2,
    sum(r.seconds) AS seconds,
    avg(r.detected::DOUBLE) FILTER (WHERE r.success) AS detection,
    avg((r.success AND NOT r.detected)::DOUBLE) AS fr_n_after,
    avg((r.success AND r.consistent AND NOT r.detected)::DOUBLE) AS fr_s_after
FROM rated_rows AS r
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
        sum(attacked) AS n_attacked, sum(succeeded) AS n_succeeded,
        100 * avg(detection) AS det_mean, 100 * stddev_pop(detection) AS det_std,
        100 * avg(fr_n_after) AS fr_n_after_mean, 100 * stddev_pop(fr_n_after) AS fr_n_after_std,
        100 * avg(fr_s_after) AS fr_s_after_mean, 100 * stddev_pop(fr_s_after) AS fr_s_after_std
    FROM combination_rates
    GROUP BY run_id, size, attack, eps, tau
), pooled AS (
    SELECT r.run_id, c.size, r.attack, r.eps, r.tau,
           avg(r.ssim) FILTER (WHERE r.success) AS ssim_pooled,
           avg(r.rmsd) FILTER (WHERE r.success) AS rmsd_pooled
    FROM rated_rows AS r
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

-- One row per (run, target model, attack, ε, τ): the run's adversarial images fed to another
-- model of the same graph (`bench run --transfer-to`, table transfer), pooled over |Ω|. Rates in
-- %, over the pairs that succeeded on the run's model and are eligible on the target (its clean
-- prediction is globally consistent with the graph and has every label of Ω positive): pairs;
-- fr_n = mean(success), fr_s = mean(success AND consistent), nt_r = mean(ntr_share) on the
-- target, Ψ from the target's clean prediction; source_fr_n (100 by construction), source_fr_s
-- and source_nt_r: the run's own rates on the same pairs. source_successes: the pairs that
-- succeeded on the run's model; not_eligible: those of them the target does not qualify;
-- n_rows: every pair of the setting.
CREATE OR REPLACE VIEW transfer_rates AS
SELECT
    t.run_id, t.target, t.attack, t.eps, t.tau,
    count(*) FILTER (WHERE t.source_success AND t.eligible) AS pairs,
    100 * avg(t.success::DOUBLE) FILTER (WHERE t.source_success AND t.eligible) AS fr_n,
    100 * avg((t.success AND t.consistent)::DOUBLE) FILTER (WHERE t.source_success AND t.eligible) AS fr_s,
    100 * avg(t.ntr_share) FILTER (WHERE t.source_success AND t.eligible) AS nt_r,
    100 * avg(r.success::DOUBLE) FILTER (WHERE t.source_success AND t.eligible) AS source_fr_n,
    100 * avg((r.success AND r.consistent)::DOUBLE) FILTER (WHERE t.source_success AND t.eligible) AS source_fr_s,
    100 * avg(r.ntr_share) FILTER (WHERE t.source_success AND t.eligible) AS source_nt_r,
    count(*) FILTER (WHERE t.source_success) AS source_successes,
    count(*) FILTER (WHERE t.source_success AND NOT t.eligible) AS not_eligible,
    count(*) AS n_rows
FROM transfer AS t
JOIN results AS r USING (run_id, combo_id, image_id, attack, eps, tau)
GROUP BY t.run_id, t.target, t.attack, t.eps, t.tau;
