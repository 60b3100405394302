//! Kind `split`: each worm in time — the first part for training, the rest for validation
//! (the study: first half / second half). Writes `split.parquet` (see windows.rs).

use anyhow::{bail, Result};
use serde::{Deserialize, Serialize};
use serde_json::{json, Map};
use wormflow_api::StageContext;

use crate::stage::Stage;
use crate::table::read_recordings;
use crate::windows::{write_split, SplitRow};

pub struct Split;

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Params {
    /// Fraction of each worm's time steps (from the start) used for training.
    pub train_fraction: f64,
}

impl Default for Params {
    fn default() -> Self {
        Params { train_fraction: 0.5 }
    }
}

impl Stage for Split {
    const NAME: &'static str = "split";
    const VERSION: &'static str = env!("WORMFLOW_VERSION_SPLIT");
    const CODE: &'static str = env!("WORMFLOW_CODE_SPLIT");
    type Params = Params;

    fn check(p: &Params) -> Result<(), String> {
        if !(p.train_fraction > 0.0 && p.train_fraction < 1.0) {
            return Err(format!(
                "params.train_fraction must be strictly between 0 and 1; got {}",
                p.train_fraction
            ));
        }
        Ok(())
    }

    fn run(p: Params, ctx: &StageContext) -> Result<wormflow_api::Provenance> {
        let mut rows = Vec::new();
        for input in ctx.inputs {
            for w in read_recordings(&input.dir)? {
                let n = w.n_steps() as u64;
                let cut = (n as f64 * p.train_fraction).floor() as u64;
                rows.push(SplitRow {
                    dataset: w.dataset,
                    worm: w.worm,
                    n_steps: n,
                    train: (0, cut),
                    val: (cut, n),
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
