//! The seven architectures of the study, on libtorch (tch). All map a batch of windows
//! (B, T, 302) to next-step predictions (B, T, 302) and share embedding → core → readout:
//!
//! | model | parameters (H = hidden size) | core |
//! |---|---|---|
//! | baseline | 0 | none: copies its input (predicts "no change") |
//! | linear | 605H + 302 | none (embedding → readout) |
//! | feedforward | H² + 606H + 302 | Linear H→H + ReLU, residual |
//! | ctrnn | 2H² + 610H + 302 | LayerNorm; input/hidden Linear H→H, learned leak α = sigmoid(a), ReLU |
//! | lstm | 8H² + 615H + 302 | LayerNorm; one LSTM layer |
//! | transformer | 6H² + 615H + 302 | sinusoidal positions; one pre-norm causal encoder layer, feed-forward width H |
//! | attention | 4H² + 611H + 302 | sinusoidal positions, LayerNorm, one causal multi-head attention |
//!
//! Counts are of parameters the forward pass uses. CTRNN, LSTM and Attention equal the
//! paper's Table II. The study's code also registered modules it never used: Table II's
//! Feedforward is 2H larger (an unused LayerNorm) and its Transformer is 12H² + 627H + 302
//! (the encoder layer counted twice plus the unused LayerNorm). `params_target` matches on
//! the counts here.

mod attention;
mod baseline;
mod blocks;
mod ctrnn;
mod feedforward;
mod linear;
mod lstm;
mod transformer;

use anyhow::{bail, Result};
use tch::{nn, Tensor};

pub use blocks::N_NEURONS_I64;

/// A next-step predictor.
pub trait Model: Send {
    /// (B, T, 302) → (B, T, 302): at each step, the prediction of the next one.
    fn forward(&self, x: &Tensor) -> Tensor;
}

pub use wormflow_stages::torch_stages::MODELS;

// Pure arithmetic, also needed at plan time (memory checks) where libtorch is not loaded.
pub use wormflow_stages::torch_stages::{hidden_for_target, n_params};

/// Heads of a multi-head attention of width h: the largest divisor of h not above 5.
pub fn heads_for(h: i64) -> i64 {
    (1..=5.min(h)).rev().find(|d| h % d == 0).unwrap_or(1)
}

/// A model that predicts the change from the current step: output = x + inner(x). It starts
/// near the Baseline (copy the input) and learns the difference; no extra parameters.
pub struct Residual(pub Box<dyn Model>);

impl Model for Residual {
    fn forward(&self, x: &Tensor) -> Tensor {
        x + self.0.forward(x)
    }
}

/// `build`, wrapped in `Residual` when asked (never for the Baseline, which copies already).
pub fn build_with(model: &str, hidden: i64, residual: bool, root: &nn::Path) -> Result<Box<dyn Model>> {
    let m = build(model, hidden, root)?;
    Ok(if residual && model != "baseline" { Box::new(Residual(m)) } else { m })
}

/// Create the model's parameters under `root` and return it.
pub fn build(model: &str, hidden: i64, root: &nn::Path) -> Result<Box<dyn Model>> {
    if model != "baseline" && hidden < 1 {
        bail!("hidden size must be at least 1; got {hidden}");
    }
    Ok(match model {
        "baseline" => Box::new(baseline::Baseline),
        "linear" => Box::new(linear::Linear::new(root, hidden)),
        "feedforward" => Box::new(feedforward::Feedforward::new(root, hidden)),
        "ctrnn" => Box::new(ctrnn::Ctrnn::new(root, hidden)),
        "lstm" => Box::new(lstm::Lstm::new(root, hidden)),
        "transformer" => Box::new(transformer::Transformer::new(root, hidden)),
        "attention" => Box::new(attention::Attention::new(root, hidden)),
        other => bail!("unknown model {other:?}; choose one of {}", MODELS.join(", ")),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::{nn, Device, Kind};

    fn counted(model: &str, h: i64) -> i64 {
        let vs = nn::VarStore::new(Device::Cpu);
        let m = build(model, h, &vs.root()).unwrap();
        // The forward pass runs and keeps the shape.
        let y = m.forward(&Tensor::zeros([2, 7, 302], (Kind::Float, Device::Cpu)));
        assert_eq!(y.size(), [2, 7, 302]);
        vs.trainable_variables().iter().map(|t| t.numel() as i64).sum()
    }

    #[test]
    fn parameter_counts_follow_the_formulas() {
        for h in [1, 8, 17, 64, 100, 234] {
            assert_eq!(counted("linear", h), 605 * h + 302);
            assert_eq!(counted("feedforward", h), h * h + 606 * h + 302);
            assert_eq!(counted("ctrnn", h), 2 * h * h + 610 * h + 302);
            assert_eq!(counted("lstm", h), 8 * h * h + 615 * h + 302);
            assert_eq!(counted("transformer", h), 6 * h * h + 615 * h + 302);
            assert_eq!(counted("attention", h), 4 * h * h + 611 * h + 302);
            for m in MODELS {
                assert_eq!(counted(m, h), n_params(m, h).unwrap(), "{m} at H={h}");
            }
        }
        assert_eq!(counted("baseline", 0), 0);
    }

    #[test]
    fn table_two_examples_and_params_target() {
        assert_eq!(n_params("lstm", 234).unwrap(), 582_260);
        // 577,909 at H = 233 is 2,091 from the target; 582,260 at H = 234 is 2,260 away.
        assert_eq!(hidden_for_target("lstm", 580_000).unwrap(), 233);
        assert_eq!(n_params("ctrnn", 100).unwrap(), 2 * 100 * 100 + 610 * 100 + 302);
        for m in &MODELS[1..] {
            let h = hidden_for_target(m, 580_000).unwrap();
            let here = (n_params(m, h).unwrap() - 580_000).abs();
            assert!(here <= (n_params(m, h + 1).unwrap() - 580_000).abs());
            assert!(here <= (n_params(m, h - 1).unwrap() - 580_000).abs());
        }
    }

    #[test]
    fn heads_are_the_largest_divisor_up_to_five() {
        assert_eq!(heads_for(234), 3);
        assert_eq!(heads_for(100), 5);
        assert_eq!(heads_for(7), 1);
        assert_eq!(heads_for(8), 4);
    }
}
