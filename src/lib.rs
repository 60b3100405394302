//! wormflow's engine: pipelines of content-hashed, cached, incremental nodes.
//!
//! The engine knows graphs, keys, stores and executors — nothing about worms. Stage kinds
//! come from a [`kinds::Registry`] filled by the binary (see `main.rs`).

pub mod cmd;
pub mod compare;
pub mod config;
pub mod cost;
pub mod dag;
pub mod error;
pub mod exec;
pub mod fsutil;
pub mod graph;
pub mod hash;
pub mod kinds;
pub mod listing;
pub mod plan;
pub mod remote;
pub mod results;
pub mod signals;
pub mod stale;
pub mod status;
pub mod store;
pub mod sync;
pub mod workspace;
