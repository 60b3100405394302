//! wormflow's libtorch half: the seven architectures (`models`), windows as tensors and the
//! masked loss (`tensors`), and the work of the `train` and `evaluate` kinds. The engine
//! never links libtorch: it runs these through the `wormflow-torch` helper binary (see
//! `wormflow_stages::torch_stages` for the protocol), so only training and evaluation
//! processes pay libtorch's start-up time and memory.

pub mod evaluate;
pub mod fit;
pub mod forecast;
pub mod models;
pub mod precision;
pub mod stacked;
pub mod tensors;
pub mod train;
pub mod weights;

/// libtorch has one random generator per process, and cargo runs tests on threads: a test
/// that seeds it and draws from it holds this lock so another test's seed cannot land
/// between the two.
#[cfg(test)]
pub(crate) fn global_rng() -> std::sync::MutexGuard<'static, ()> {
    static LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());
    LOCK.lock().unwrap_or_else(|e| e.into_inner())
}
