//! The science of wormflow: stage kinds for C. elegans whole-brain activity data, models
//! and analysis. Each kind implements `wormflow_api::StageKind`; the binary registers
//! them all through [`register_all`].

use std::sync::Arc;

use wormflow_api::StageKind;

/// Hand every stage kind of this crate to `register`.
pub fn register_all(register: &mut dyn FnMut(Arc<dyn StageKind>)) {
    let _ = register;
}
