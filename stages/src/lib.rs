//! The science of wormflow: stage kinds for C. elegans whole-brain activity data, models
//! and analysis. Each kind implements `wormflow_api::StageKind` (through the typed
//! [`stage::Stage`] adapter); the binary registers them all with [`register_all`].

pub mod dandi;
pub mod download;
pub mod fit;
pub mod h5;
pub mod metrics;
pub mod model_size;
pub mod neurons;
pub mod parquet_io;
pub mod preprocess;
pub mod report;
pub mod rng;
pub mod sample;
pub mod split;
pub mod stage;
pub mod standardize;
pub mod step_cost;
pub mod summaries;
pub mod sweep;
pub mod sweep_filter;
pub mod synthesize;
pub mod table;
pub mod torch_cost;
pub mod torch_stages;
pub mod validate;
pub mod windows;

use std::sync::Arc;

use wormflow_api::StageKind;

/// Hand every stage kind of this crate to `register`.
pub fn register_all(register: &mut dyn FnMut(Arc<dyn StageKind>)) {
    register(stage::kind::<download::Download>());
    register(stage::kind::<synthesize::Synthesize>());
    register(stage::kind::<standardize::Standardize>());
    register(stage::kind::<preprocess::Preprocess>());
    register(stage::kind::<split::Split>());
    register(stage::kind::<sample::Sample>());
    register(stage::kind::<torch_stages::Train>());
    register(stage::kind::<torch_stages::Evaluate>());
    register(stage::kind::<fit::Fit>());
    register(stage::kind::<report::Report>());
}
