// Node table of label-graph nodes. key = graph + ':' + name keeps several graphs side by side.
// idx: position in the extended label order; source_id: WordNet synset or Open Images MID;
// is_label: one of the dataset's own labels (not an abstract node).
CREATE NODE TABLE IF NOT EXISTS Label(
    key STRING,
    graph STRING,
    name STRING,
    idx INT64,
    source_id STRING,
    is_label BOOLEAN,
    PRIMARY KEY (key)
)
