//! Kind `split`: each worm in time — the first part for training, the next for validation
//! and, optionally, a last part held out for testing. The study's split is the default:
//! first half / second half. `parts = [0.6, 0.2, 0.2]` gives train/val/test fractions and
//! `segment = 1000` applies them within each segment of that many steps, as the forecasting
//! benchmark POCO does (yuvenduan/POCO `datasets/datasets.py`: `max(1, n // segment)`
//! segments, the last one taking the remainder; cuts at `floor(len × cumulative fraction)`).
//! Writes `split.parquet` (see windows.rs).

use anyhow::{bail, Result};
use serde::{Deserialize, Serialize};
use serde_json::{json, Map};
use wormflow_api::StageContext;

use crate::stage::Stage;
use crate::table::read_recordings;
use crate::windows::{write_split, Part, SplitRow};

pub struct Split;

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Params {
    /// Fraction of each worm's time steps (from the start) used for training; the rest
    /// validates (the study's split; 0.5 when neither this nor `parts` is given).
    pub train_fraction: Option<f64>,
    /// [train, val] or [train, val, test] fractions, summing to 1.
    pub parts: Option<Vec<f64>>,
    /// Split within each segment of this many time steps (0: the whole recording at once).
    pub segment: u64,
}

impl Params {
    /// The fractions of the parts, in the order train, val(, test).
    fn fractions(&self) -> Vec<f64> {
        match (&self.parts, self.train_fraction) {
            (Some(parts), _) => parts.clone(),
            (None, Some(f)) => vec![f, 1.0 - f],
            (None, None) => vec![0.5, 0.5],
        }
    }
}

/// The parts' ranges of a recording of `n` steps, in time order.
pub fn part_ranges(n: u64, fractions: &[f64], segment: u64) -> Vec<(Part, u64, u64)> {
    let segments = n.checked_div(segment).unwrap_or(1).max(1);
    let mut out = Vec::new();
    for s in 0..segments {
        let start = s * segment;
        let end = if s + 1 == segments { n } else { start + segment };
        let len = end - start;
        let mut cut = start;
        let mut cumulative = 0.0;
        for (k, (f, part)) in fractions.iter().zip(Part::ALL).enumerate() {
            cumulative += f;
            let next = if k + 1 == fractions.len() {
                end
            } else {
                start + (len as f64 * cumulative).floor() as u64
            };
            out.push((part, cut, next.max(cut)));
            cut = next.max(cut);
        }
    }
    out
}

impl Stage for Split {
    const NAME: &'static str = "split";
    const VERSION: &'static str = env!("WORMFLOW_VERSION_SPLIT");
    const CODE: &'static str = env!("WORMFLOW_CODE_SPLIT");
    type Params = Params;

    fn check(p: &Params) -> Result<(), String> {
        if p.parts.is_some() && p.train_fraction.is_some() {
            return Err("give params.parts or params.train_fraction, not both".into());
        }
        if let Some(f) = p.train_fraction {
            if !(f > 0.0 && f < 1.0) {
                return Err(format!(
                    "params.train_fraction must be strictly between 0 and 1; got {f}"
                ));
            }
        }
        if let Some(parts) = &p.parts {
            let sum: f64 = parts.iter().sum();
            if !(2..=3).contains(&parts.len())
                || parts.iter().any(|f| f.is_nan() || *f <= 0.0)
                || (sum - 1.0).abs() > 1e-9
            {
                return Err(format!(
                    "params.parts must be [train, val] or [train, val, test]: positive fractions summing to 1; got {parts:?}"
                ));
            }
        }
        Ok(())
    }

    fn run(p: Params, ctx: &StageContext) -> Result<wormflow_api::Provenance> {
        let fractions = p.fractions();
        let mut rows = Vec::new();
        for input in ctx.inputs {
            for w in read_recordings(&input.dir)? {
                let n = w.n_steps() as u64;
                rows.push(SplitRow {
                    dataset: w.dataset,
                    worm: w.worm,
                    n_steps: n,
                    ranges: part_ranges(n, &fractions, p.segment),
                });
            }
        }
        if rows.is_empty() {
            bail!("no recordings among the inputs; `needs` should name a preprocess stage");
        }
        write_split(&ctx.out_dir.join("split.parquet"), &rows, &ctx.file_metadata())?;
        let mut prov = Map::new();
        prov.insert("worms".into(), json!(rows.len()));
        Ok(prov)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sample::window_starts;

    #[test]
    fn the_default_is_the_studys_half_split() {
        let r = part_ranges(1001, &Params::default().fractions(), 0);
        assert_eq!(r, vec![(Part::Train, 0, 500), (Part::Val, 500, 1001)]);
    }

    /// A worm whose value at each step is its time index: every step belongs to exactly one
    /// part, and no window of one part holds a step of another.
    #[test]
    fn parts_never_leak_into_each_other() {
        let n = 3456;
        let ranges = part_ranges(n, &[0.6, 0.2, 0.2], 1000);
        assert_eq!(ranges.len(), 9, "3 segments × 3 parts: {ranges:?}");
        let mut owner = vec![None; n as usize];
        for &(part, a, b) in &ranges {
            for t in a..b {
                assert!(owner[t as usize].is_none(), "step {t} in two parts");
                owner[t as usize] = Some(part);
            }
        }
        assert!(owner.iter().all(Option::is_some), "every step has a part");
        // The last segment takes the remainder, as POCO's.
        assert_eq!(
            ranges[6..],
            [(Part::Train, 2000, 2873), (Part::Val, 2873, 3164), (Part::Test, 3164, 3456)]
        );
        for part in Part::ALL {
            let mine: Vec<(u64, u64)> =
                ranges.iter().filter(|r| r.0 == part).map(|r| (r.1, r.2)).collect();
            for mode in ["equidistant", "random"] {
                let starts = window_starts(&mine, 65, 40, mode, 3, 0, part.as_str());
                assert_eq!(starts.len(), 40);
                for s in starts {
                    let steps: Vec<u64> = (s..s + 65).collect(); // the values, = time index
                    assert!(
                        steps.iter().all(|&t| owner[t as usize] == Some(part)),
                        "{part:?} {mode} window at {s} crosses into another part"
                    );
                }
            }
        }
    }

    #[test]
    fn bad_parts_are_refused() {
        let p = |parts: Vec<f64>| Params { parts: Some(parts), ..Params::default() };
        assert!(Split::check(&p(vec![0.6, 0.2, 0.2])).is_ok());
        assert!(Split::check(&p(vec![0.6, 0.3])).is_err());
        assert!(Split::check(&p(vec![1.0])).is_err());
        assert!(Split::check(&p(vec![0.5, 0.5, 0.0])).is_err());
        let both = Params { train_fraction: Some(0.5), ..p(vec![0.5, 0.5]) };
        assert!(Split::check(&both).unwrap_err().contains("not both"));
    }
}
