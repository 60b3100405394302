//! Kind `sample`: which worms train, and where the windows are.
//!
//! Training set: `n_worms` worms drawn from the pool of all sources with probability
//! proportional to each source's size (a multinomial over sources, seeded; a source that
//! runs out of worms drops out of later draws), then that many worms per source chosen
//! uniformly. `n_worms = 0` takes every worm. The validation set is fixed: every worm.
//!
//! Windows: `n_windows` per worm per part (train and val; a test part is never sampled),
//! each `window + 1` steps (L inputs and the one-step-ahead target), `equidistant` (first at
//! the part's start, last ending at its end) or `random` (uniform starts, seeded). Windows
//! never cross the split: when a part is several ranges (a split within segments), the
//! starts are drawn over the starts that fit inside one range. A part shorter than one
//! window gets none; such parts are counted in `sample.parquet` (`n_too_short`) and named
//! in a warning.

use anyhow::{bail, Result};
use rand::Rng;
use serde::{Deserialize, Serialize};
use serde_json::{json, Map};
use wormflow_api::StageContext;

use crate::rng::stream;
use crate::stage::Stage;
use crate::summaries::SampleSummary;
use crate::windows::{read_split, write_windows, Part, SplitRow, Window};

pub struct Sample;

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Params {
    pub n_windows: u64,
    /// L: input length in time steps (each window holds L + 1 steps).
    pub window: u64,
    /// "equidistant" | "random"
    pub mode: String,
    pub seed: u64,
    /// Worms in the training set (0 = all).
    pub n_worms: u64,
}

impl Default for Params {
    fn default() -> Self {
        Params { n_windows: 32, window: 180, mode: "equidistant".into(), seed: 0, n_worms: 0 }
    }
}

impl Stage for Sample {
    const NAME: &'static str = "sample";
    const VERSION: &'static str = env!("WORMFLOW_VERSION_SAMPLE");
    const CODE: &'static str = env!("WORMFLOW_CODE_SAMPLE");
    type Params = Params;

    fn check(p: &Params) -> Result<(), String> {
        if !matches!(p.mode.as_str(), "equidistant" | "random") {
            return Err(format!(
                "params.mode must be \"equidistant\" or \"random\"; got {:?}",
                p.mode
            ));
        }
        if p.n_windows == 0 || p.window == 0 {
            return Err("params.n_windows and params.window must be at least 1".into());
        }
        Ok(())
    }

    fn run(p: Params, ctx: &StageContext) -> Result<wormflow_api::Provenance> {
        let mut pool = Vec::new();
        for input in ctx.inputs {
            ctx.check_cancel()?;
            pool.extend(read_split(&input.dir.join("split.parquet"))?);
        }
        if pool.is_empty() {
            bail!("no worms among the inputs; `needs` should name a split stage");
        }
        let chosen = choose_training_worms(&pool, p.n_worms, p.seed)?;
        let len = p.window + 1;
        let mut windows = Vec::new();
        let mut too_short = Vec::new();
        for (i, w) in pool.iter().enumerate() {
            ctx.check_cancel()?;
            for (part, wanted) in [(Part::Train, chosen[i]), (Part::Val, true)] {
                if !wanted {
                    continue;
                }
                let set = part.as_str();
                let ranges = w.ranges_of(part);
                let starts =
                    window_starts(&ranges, len, p.n_windows, &p.mode, p.seed, i as u64, set);
                if starts.is_empty() {
                    too_short.push(format!(
                        "{}/{} {set} part ({} steps)",
                        w.dataset,
                        w.worm,
                        w.steps_of(part)
                    ));
                }
                windows.extend(starts.into_iter().map(|start| Window {
                    set: set.into(),
                    dataset: w.dataset.clone(),
                    worm: w.worm.clone(),
                    start,
                    length: len,
                }));
            }
        }
        if !windows.iter().any(|w| w.set == "train") {
            bail!("no training window fits: every chosen worm's training part is shorter than window + 1 = {len} steps; lower params.window");
        }
        write_windows(&ctx.out_dir.join("windows.parquet"), &windows, &ctx.file_metadata())?;
        let train: Vec<&SplitRow> =
            pool.iter().zip(&chosen).filter(|(_, c)| **c).map(|(w, _)| w).collect();
        let count = |set: &str| windows.iter().filter(|w| w.set == set).count() as i64;
        let summary = SampleSummary {
            n_worms: train.len() as i64,
            train_steps: train.iter().map(|w| w.steps_of(Part::Train) as i64).sum(),
            n_train_windows: count("train"),
            n_val_windows: count("val"),
            window_length: len as i64,
            n_too_short: too_short.len() as i64,
        };
        crate::summaries::write(
            &ctx.out_dir.join("sample.parquet"),
            &summary,
            &ctx.file_metadata(),
        )?;
        let mut prov = Map::new();
        prov.insert("windows".into(), json!(windows.len()));
        if !too_short.is_empty() {
            let w = format!(
                "{} part(s) shorter than one window of {len} steps got no window: {}",
                too_short.len(),
                too_short.join(", ")
            );
            prov.insert(wormflow_api::WARNINGS.into(), json!([w]));
        }
        Ok(prov)
    }
}

/// Which worms of the pool train (a mask in pool order).
pub fn choose_training_worms(pool: &[SplitRow], n_worms: u64, seed: u64) -> Result<Vec<bool>> {
    let total = pool.len() as u64;
    if n_worms == 0 || n_worms == total {
        return Ok(vec![true; pool.len()]);
    }
    if n_worms > total {
        bail!("params.n_worms = {n_worms}, but the pool has only {total} worms");
    }
    // Sources in order of first appearance, with their worms.
    let mut sources: Vec<(&str, Vec<usize>)> = Vec::new();
    for (i, w) in pool.iter().enumerate() {
        match sources.iter_mut().find(|(d, _)| *d == w.dataset) {
            Some((_, v)) => v.push(i),
            None => sources.push((&w.dataset, vec![i])),
        }
    }
    let mut rng = stream(seed, "training-worms", 0);
    let mut counts = vec![0usize; sources.len()];
    for _ in 0..n_worms {
        let weights: Vec<f64> = sources
            .iter()
            .zip(&counts)
            .map(|((_, ws), &c)| if c < ws.len() { ws.len() as f64 } else { 0.0 })
            .collect();
        let mut r = rng.random::<f64>() * weights.iter().sum::<f64>();
        let mut pick = weights.iter().rposition(|&w| w > 0.0).expect("n_worms ≤ pool size");
        for (s, w) in weights.iter().enumerate() {
            if r < *w {
                pick = s;
                break;
            }
            r -= w;
        }
        counts[pick] += 1;
    }
    let mut chosen = vec![false; pool.len()];
    for ((_, worms), count) in sources.iter().zip(counts) {
        for k in rand::seq::index::sample(&mut rng, worms.len(), count) {
            chosen[worms[k]] = true;
        }
    }
    Ok(chosen)
}

/// Window starts within `ranges` (each end exclusive; one range for the study's split,
/// one per segment for a split within segments). The candidates are every start whose
/// window fits inside one range, in time order; `random` draws among them uniformly
/// (seeded by seed, set and worm), `equidistant` spreads `n` evenly from the first to the
/// last.
pub fn window_starts(
    ranges: &[(u64, u64)],
    len: u64,
    n: u64,
    mode: &str,
    seed: u64,
    worm: u64,
    set: &str,
) -> Vec<u64> {
    // Candidate starts per range: a..=b-len.
    let fits: Vec<(u64, u64)> =
        ranges.iter().filter(|(a, b)| *b >= *a + len).map(|&(a, b)| (a, b - len - a + 1)).collect();
    let total: u64 = fits.iter().map(|f| f.1).sum();
    if total == 0 {
        return Vec::new();
    }
    let at = |mut k: u64| {
        for &(a, count) in &fits {
            if k < count {
                return a + k;
            }
            k -= count;
        }
        unreachable!("k < total")
    };
    let span = total - 1;
    match mode {
        "random" => {
            let mut rng = stream(seed, &format!("windows-{set}"), worm);
            (0..n).map(|_| at(rng.random_range(0..=span))).collect()
        }
        _ if n == 1 => vec![at(0)],
        _ => {
            (0..n).map(|k| at(((k as f64) * span as f64 / (n - 1) as f64).round() as u64)).collect()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pool(sizes: &[(&str, usize)]) -> Vec<SplitRow> {
        sizes
            .iter()
            .flat_map(|(d, n)| {
                (0..*n).map(move |i| SplitRow {
                    dataset: d.to_string(),
                    worm: format!("w{i}"),
                    n_steps: 100,
                    ranges: vec![(Part::Train, 0, 50), (Part::Val, 50, 100)],
                })
            })
            .collect()
    }

    #[test]
    fn windows_stay_inside_their_half() {
        for mode in ["equidistant", "random"] {
            for s in window_starts(&[(50, 400)], 181, 32, mode, 3, 1, "val") {
                assert!(s >= 50 && s + 181 <= 400, "{mode}: {s}");
            }
        }
        let eq = window_starts(&[(0, 361)], 181, 3, "equidistant", 0, 0, "train");
        assert_eq!(eq, vec![0, 90, 180]);
        assert!(window_starts(&[(0, 100)], 181, 3, "random", 0, 0, "train").is_empty());
    }

    #[test]
    fn the_same_seed_gives_the_same_windows_and_worms() {
        let a = window_starts(&[(0, 1000)], 181, 32, "random", 7, 2, "train");
        assert_eq!(a, window_starts(&[(0, 1000)], 181, 32, "random", 7, 2, "train"));
        assert_ne!(a, window_starts(&[(0, 1000)], 181, 32, "random", 8, 2, "train"));
        let p = pool(&[("A", 7), ("B", 5), ("C", 1)]);
        assert_eq!(
            choose_training_worms(&p, 6, 1).unwrap(),
            choose_training_worms(&p, 6, 1).unwrap()
        );
    }

    #[test]
    fn source_proportions_follow_source_sizes() {
        let p = pool(&[("Dag2023", 7), ("Kato2015", 5), ("Flavell2023", 1)]);
        let (n_w, seeds) = (3, 4000);
        let mut totals = [0.0f64; 3];
        for seed in 0..seeds {
            let c = choose_training_worms(&p, n_w, seed).unwrap();
            assert_eq!(c.iter().filter(|x| **x).count(), n_w as usize);
            totals[0] += c[..7].iter().filter(|x| **x).count() as f64;
            totals[1] += c[7..12].iter().filter(|x| **x).count() as f64;
            totals[2] += c[12..].iter().filter(|x| **x).count() as f64;
        }
        for (t, size) in totals.iter().zip([7.0, 5.0, 1.0]) {
            let expected = n_w as f64 * size / 13.0;
            let got = t / seeds as f64;
            assert!(
                (got - expected).abs() < 0.05,
                "expected {expected:.3} worms per draw, got {got:.3}"
            );
        }
    }
}
