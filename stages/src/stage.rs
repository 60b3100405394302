//! A typed way to write a stage kind: params as a serde struct whose `Default` is the
//! documented defaults, validated at plan time; the adapter turns it into the engine's
//! `StageKind`.

use std::collections::BTreeMap;
use std::marker::PhantomData;
use std::sync::Arc;

use anyhow::Result;
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::{Map, Value};
use wormflow_api::cost::{CostInput, Estimate};
use wormflow_api::{Finished, Provenance, StageContext, StageKind};

pub trait Stage: Send + Sync + 'static {
    const NAME: &'static str;
    /// Derived from the stage's source files at build time (see build.rs).
    const VERSION: &'static str;
    /// The manifest behind `VERSION` (build.rs): `item=value` pairs separated by `;`.
    const CODE: &'static str = "";
    /// `#[serde(default, deny_unknown_fields)]`; `Default` gives every param's default.
    type Params: Serialize + DeserializeOwned + Default;

    /// Checks beyond types (ranges, required values); say what to change.
    fn check(_p: &Self::Params) -> Result<(), String> {
        Ok(())
    }
    /// See `StageKind::execution_params`.
    const EXECUTION_PARAMS: &'static [&'static str] = &[];
    /// See `StageKind::checkpoints`.
    const CHECKPOINTS: bool = false;
    /// Workspace files whose contents belong in the key.
    fn file_deps(_p: &Self::Params) -> Vec<String> {
        Vec::new()
    }
    fn run(p: Self::Params, ctx: &StageContext) -> Result<Provenance>;
    /// See `StageKind::group_key`.
    fn group_key(_p: &Self::Params) -> Option<String> {
        None
    }
    /// See `StageKind::estimate`.
    fn estimate(_p: &Self::Params, _inputs: &[CostInput]) -> Option<Estimate> {
        None
    }
    /// See `StageKind::run_group`; `ps[i]` are `ctxs[i]`'s params.
    fn run_group(ps: Vec<Self::Params>, ctxs: &[StageContext], finished: &mut Finished) {
        for (k, (p, ctx)) in ps.into_iter().zip(ctxs).enumerate() {
            finished(k, Self::run(p, ctx));
        }
    }
}

struct Adapter<S: Stage>(PhantomData<S>);

/// Params of kind `S`; an error names the param (`params.warmup_steps: invalid value …`).
fn parse<S: Stage>(params: &Value) -> Result<S::Params, String> {
    serde_path_to_error::deserialize(params.clone()).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        if path == "." {
            format!("bad params for kind {:?}: {inner}", S::NAME)
        } else {
            format!("params.{path}: {inner}")
        }
    })
}

impl<S: Stage> StageKind for Adapter<S> {
    fn name(&self) -> &str {
        S::NAME
    }
    fn version(&self) -> &str {
        S::VERSION
    }
    fn code(&self) -> BTreeMap<String, String> {
        let pairs = S::CODE.split(';').filter_map(|entry| entry.split_once('='));
        pairs.map(|(item, value)| (item.to_string(), value.to_string())).collect()
    }
    fn defaults(&self) -> Map<String, Value> {
        match serde_json::to_value(S::Params::default()) {
            Ok(Value::Object(m)) => m,
            _ => Map::new(),
        }
    }
    fn validate(&self, params: &Value) -> Result<(), String> {
        S::check(&parse::<S>(params)?)
    }
    fn file_deps(&self, params: &Value) -> Vec<String> {
        parse::<S>(params).map(|p| S::file_deps(&p)).unwrap_or_default()
    }
    fn run(&self, ctx: &StageContext) -> Result<Provenance> {
        let p = parse::<S>(ctx.params).map_err(anyhow::Error::msg)?;
        S::run(p, ctx).map_err(|e| e.context(format!("{} ({})", ctx.node, S::NAME)))
    }
    fn group_key(&self, params: &Value) -> Option<String> {
        S::group_key(&parse::<S>(params).ok()?)
    }
    fn estimate(&self, params: &Value, inputs: &[CostInput]) -> Option<Estimate> {
        S::estimate(&parse::<S>(params).ok()?, inputs)
    }
    fn execution_params(&self) -> &'static [&'static str] {
        S::EXECUTION_PARAMS
    }
    fn checkpoints(&self) -> bool {
        S::CHECKPOINTS
    }
    fn run_group(&self, ctxs: &[StageContext], finished: &mut Finished) {
        let parsed: Result<Vec<S::Params>, String> =
            ctxs.iter().map(|ctx| parse::<S>(ctx.params)).collect();
        match parsed {
            Ok(ps) => S::run_group(ps, ctxs, &mut |k, result: Result<Provenance>| {
                let node = ctxs[k].node;
                finished(k, result.map_err(|e| e.context(format!("{node} ({})", S::NAME))))
            }),
            // Checked at plan time; should it fail here, each node runs (and fails) alone.
            Err(_) => {
                for (k, ctx) in ctxs.iter().enumerate() {
                    finished(k, self.run(ctx));
                }
            }
        }
    }
}

pub fn kind<S: Stage>() -> Arc<dyn StageKind> {
    Arc::new(Adapter::<S>(PhantomData))
}
