//! `--dedup`: duplicate clusters keyed on the rows' texts, and which row of each is kept.

use super::*;

/// The rows' texts `--dedup` compares, and why (see [`DedupKey`]).
pub(super) type DedupKey = (Vec<&'static str>, Option<String>);

/// `--dedup`'s duplicate clusters and what they are keyed on. Text-label rows: the clusters of
/// the text (the label is compared by [`keep_first`]). Rows with a response: rows whose
/// prompts share a cluster and whose responses share a cluster (and, for preference rows,
/// whose rejected answers do), each text clustered on its own so that no joined string can
/// make two different rows look alike.
pub(super) fn dedup_clusters(
    table: &Table,
    texts: &[String],
    layout: &RowLayout,
    p: &duplicates::DupParams,
) -> (Vec<Vec<usize>>, DedupKey) {
    let Some(responses) = table.responses.as_deref() else {
        return (
            duplicates::duplicate_clusters(texts, p),
            (vec!["text", "label"], None),
        );
    };
    let (key, note): DedupKey = match &table.rejected {
        Some(_) => (vec!["prompt", "chosen", "rejected"], None),
        None if *layout == RowLayout::Format(RowFormat::Preference) => (
            vec!["prompt", "chosen"],
            Some("the rejected answers were not read: rows are compared on prompt and chosen answer only".into()),
        ),
        None => (vec!["prompt", "response"], None),
    };
    let mut parts = vec![
        duplicates::duplicate_clusters(texts, p),
        duplicates::duplicate_clusters(responses, p),
    ];
    if let Some(rejected) = table.rejected.as_deref() {
        parts.push(duplicates::duplicate_clusters(rejected, p));
    }
    (joint_clusters(&parts, table.n_rows), (key, note))
}

/// Rows in one cluster of every partition, ordered by their first row.
fn joint_clusters(parts: &[Vec<Vec<usize>>], n: usize) -> Vec<Vec<usize>> {
    let mut ids: Vec<Vec<usize>> = vec![Vec::with_capacity(parts.len()); n];
    for clusters in parts {
        for (c, rows) in clusters.iter().enumerate() {
            for &r in rows {
                if let Some(x) = ids.get_mut(r) {
                    x.push(c);
                }
            }
        }
    }
    let mut at: std::collections::HashMap<&[usize], usize> = std::collections::HashMap::new();
    let mut out: Vec<Vec<usize>> = Vec::new();
    for (r, key) in ids.iter().enumerate() {
        match at.get(key.as_slice()) {
            Some(&k) => out[k].push(r),
            None => {
                at.insert(key.as_slice(), out.len());
                out.push(vec![r]);
            }
        }
    }
    out
}

/// `--dedup`: per row the row it repeats (kept in the clean output), and the report section.
/// Within each duplicate cluster, the first not quarantined row of each label is kept; every
/// later not quarantined row of that label points to it. Quarantined rows are left alone, so
/// a duplicate never points to a row that is not clean.
pub(super) fn keep_first(
    clusters: &[Vec<usize>],
    labels: Option<&[u32]>,
    quarantined: &[bool],
    mode: Dedup,
) -> (Vec<Option<usize>>, DedupSection) {
    let mut dup = vec![None; quarantined.len()];
    let mut removed_clusters = 0usize;
    let mut sizes: BTreeMap<usize, usize> = BTreeMap::new();
    for c in clusters.iter().filter(|c| c.len() > 1) {
        let mut kept: BTreeMap<u32, usize> = BTreeMap::new();
        let mut removed = 0usize;
        for &r in c {
            if quarantined[r] {
                continue;
            }
            let label = labels.map_or(0, |l| l[r]);
            match kept.get(&label) {
                Some(&k) => {
                    dup[r] = Some(k);
                    removed += 1;
                }
                None => {
                    kept.insert(label, r);
                }
            }
        }
        if removed > 0 {
            removed_clusters += 1;
            *sizes.entry(removed).or_default() += 1;
        }
    }
    let removed_rows = dup.iter().filter(|d| d.is_some()).count();
    let section = DedupSection {
        mode: mode.as_str(),
        removed_rows,
        clusters_with_removals: removed_clusters,
        removed_per_cluster_histogram: sizes,
        key: vec!["text", "label"],
        note: None,
    };
    (dup, section)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn joint_clusters_need_every_partition_to_agree() {
        // prompts: {0, 1, 3}, {2}; responses: {0, 1}, {2, 3}
        let prompts = vec![vec![0, 1, 3], vec![2]];
        let responses = vec![vec![0, 1], vec![2, 3]];
        assert_eq!(
            joint_clusters(&[prompts, responses], 4),
            vec![vec![0, 1], vec![2], vec![3]]
        );
    }
}
