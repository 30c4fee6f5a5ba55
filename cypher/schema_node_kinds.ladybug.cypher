// Ladybug tells dataset labels from abstract nodes by is_label alone (one label per table):
// nothing to upgrade.
RETURN 0 AS nothing
