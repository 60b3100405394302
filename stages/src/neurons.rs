//! The 302 neurons of the C. elegans hermaphrodite (data/neurons.csv, byte-sorted labels)
//! and how raw labels from recordings are mapped onto them.
//!
//! Mapping rules, applied per worm:
//! 1. Normalise: trim, upper-case, drop zero padding of a numeric suffix (`VB02` → `VB2`).
//!    Empty and purely numeric labels mean "not identified" (no slot, not counted).
//! 2. Exact labels are matched first. A label that is not one of the 302 is *unknown*; a
//!    label given to more than one column is a *duplicate* — all its columns are dropped,
//!    since the recording cannot tell which trace is that neuron.
//! 3. Then, in column order, labels with `?` (left/right or dorsal/ventral ambiguity,
//!    e.g. `SAAD?`): each `?` stands for one character; the label goes to the first
//!    canonical name (in neurons.csv order) that matches and is not yet used in that worm,
//!    or is dropped if every match is taken.

use std::collections::HashMap;
use std::sync::OnceLock;

const NEURONS_CSV: &str = include_str!("../../data/neurons.csv");

pub const N_NEURONS: usize = 302;

struct Table {
    names: Vec<String>,
    index: HashMap<String, usize>,
    /// Neurotransmitter per neuron (empty when unknown).
    transmitter: Vec<String>,
}

fn table() -> &'static Table {
    static TABLE: OnceLock<Table> = OnceLock::new();
    TABLE.get_or_init(|| {
        let mut names = Vec::with_capacity(N_NEURONS);
        let mut transmitter = Vec::with_capacity(N_NEURONS);
        for line in NEURONS_CSV.lines().skip(1).filter(|l| !l.trim().is_empty()) {
            let mut cols = line.split(',');
            names.push(cols.next().unwrap_or_default().trim().to_string());
            transmitter.push(cols.nth(1).unwrap_or_default().trim().to_string());
        }
        assert_eq!(names.len(), N_NEURONS, "data/neurons.csv must list 302 neurons");
        let index = names.iter().enumerate().map(|(i, n)| (n.clone(), i)).collect();
        Table { names, index, transmitter }
    })
}

/// The canonical names, in slot order.
pub fn names() -> &'static [String] {
    &table().names
}

pub fn index_of(name: &str) -> Option<usize> {
    table().index.get(name).copied()
}

/// A neuron's class with left and right pooled: the name without its final L or R when the
/// mirror neuron exists (AVAL, AVAR → AVA; SMDDL → SMDD), else the name itself (AVL, DVA).
pub fn class_of(name: &str) -> &str {
    let Some(stem) = name.strip_suffix('L').or_else(|| name.strip_suffix('R')) else { return name };
    let mirror = if name.ends_with('L') { format!("{stem}R") } else { format!("{stem}L") };
    if index_of(&mirror).is_some() {
        stem
    } else {
        name
    }
}

/// The neurotransmitter of a neuron as neurons.csv gives it ("ACh", "GABA", "Glu", …).
pub fn transmitter(i: usize) -> &'static str {
    &table().transmitter[i]
}

/// Trim, upper-case and remove zero padding from a numeric suffix.
pub fn normalise(raw: &str) -> String {
    let s = raw.trim().to_uppercase();
    let digits_from = s.trim_end_matches(|c: char| c.is_ascii_digit()).len();
    let (stem, digits) = s.split_at(digits_from);
    if digits.len() > 1 && digits.starts_with('0') && !stem.is_empty() {
        let trimmed = digits.trim_start_matches('0');
        return format!("{stem}{}", if trimmed.is_empty() { "0" } else { trimmed });
    }
    s
}

/// Where each column of a recording goes, and what was dropped.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct LabelMap {
    /// For each column, its neuron slot (None: unidentified or dropped).
    pub slots: Vec<Option<usize>>,
    pub unknown: u32,
    pub duplicate: u32,
    pub ambiguous_resolved: u32,
    pub ambiguous_dropped: u32,
}

impl LabelMap {
    pub fn n_labelled(&self) -> usize {
        self.slots.iter().flatten().count()
    }
}

fn matches_pattern(pattern: &str, name: &str) -> bool {
    pattern.len() == name.len()
        && pattern.bytes().zip(name.bytes()).all(|(p, n)| p == b'?' || p == n)
}

/// Map a recording's column labels (None or "" = unidentified) to neuron slots.
pub fn map_labels(labels: &[Option<&str>]) -> LabelMap {
    let normalised: Vec<Option<String>> = labels
        .iter()
        .map(|l| {
            l.map(normalise).filter(|s| !s.is_empty() && !s.chars().all(|c| c.is_ascii_digit()))
        })
        .collect();
    let mut map = LabelMap { slots: vec![None; labels.len()], ..Default::default() };
    let mut used = vec![false; N_NEURONS];
    // Exact labels: count how often each neuron is named.
    let mut columns_of: HashMap<usize, Vec<usize>> = HashMap::new();
    for (col, label) in normalised.iter().enumerate() {
        let Some(label) = label else { continue };
        if label.contains('?') {
            continue;
        }
        match index_of(label) {
            Some(slot) => columns_of.entry(slot).or_default().push(col),
            None => map.unknown += 1,
        }
    }
    for (slot, cols) in columns_of {
        if cols.len() == 1 {
            map.slots[cols[0]] = Some(slot);
            used[slot] = true;
        } else {
            map.duplicate += cols.len() as u32;
            used[slot] = true; // an ambiguous label must not take a contested name either
        }
    }
    for (col, label) in normalised.iter().enumerate() {
        let Some(label) = label else { continue };
        if !label.contains('?') {
            continue;
        }
        let candidate = names()
            .iter()
            .enumerate()
            .find(|(i, n)| !used[*i] && matches_pattern(label, n))
            .map(|(i, _)| i);
        match candidate {
            Some(slot) => {
                map.slots[col] = Some(slot);
                used[slot] = true;
                map.ambiguous_resolved += 1;
            }
            None => map.ambiguous_dropped += 1,
        }
    }
    map
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_has_302_sorted_names() {
        assert_eq!(names().len(), 302);
        assert!(names().windows(2).all(|w| w[0] < w[1]));
        assert_eq!(index_of("ADAL"), Some(0));
        assert_eq!(transmitter(index_of("DD1").unwrap()), "GABA");
    }

    #[test]
    fn classes_pool_left_and_right_only_where_both_exist() {
        assert_eq!(class_of("AVAL"), "AVA");
        assert_eq!(class_of("AVAR"), "AVA");
        assert_eq!(class_of("SMDDL"), "SMDD");
        assert_eq!(class_of("SMDDR"), "SMDD");
        assert_eq!(class_of("SMDVL"), "SMDV"); // dorsal and ventral stay apart
        assert_eq!(class_of("AVL"), "AVL"); // no AVR
        assert_eq!(class_of("DVA"), "DVA");
        assert_eq!(class_of("VB2"), "VB2");
        let classes: std::collections::BTreeSet<&str> =
            names().iter().map(|n| class_of(n)).collect();
        // 302 neurons, 99 of them left/right pairs (a Python count over neurons.csv agrees).
        assert_eq!(classes.len(), 203);
    }

    #[test]
    fn normalisation() {
        assert_eq!(normalise(" vb02 "), "VB2");
        assert_eq!(normalise("AS10"), "AS10");
        assert_eq!(normalise("DA01"), "DA1");
        assert_eq!(normalise("SAAD?"), "SAAD?");
    }

    #[test]
    fn exact_duplicate_unknown_and_ambiguous_labels() {
        let labels = [
            Some("AVAL"),
            Some("SAADL"),
            Some("SAAD?"),
            Some("SAAD?"),
            Some("FOO"),
            Some("RIAR"),
            Some("riar"),
            None,
            Some("12"),
        ];
        let m = map_labels(&labels);
        assert_eq!(m.slots[0], index_of("AVAL"));
        assert_eq!(m.slots[1], index_of("SAADL"));
        assert_eq!(m.slots[2], index_of("SAADR"), "the free side is taken");
        assert_eq!(m.slots[3], None, "both sides used: dropped");
        assert_eq!(
            (m.unknown, m.duplicate, m.ambiguous_resolved, m.ambiguous_dropped),
            (1, 2, 1, 1)
        );
        assert_eq!(m.slots[5], None);
        assert_eq!(m.n_labelled(), 3);
    }
}
