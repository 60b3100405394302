//! The seven architectures of the study, on libtorch (tch), each as the study's code builds
//! it (qsimeon/worm-graph, models/_utils.py), and two from the forecasting literature. All
//! map a batch of windows (B, T, 302) to next-step predictions (B, T, 302); the study's share
//! embedding → core → readout:
//!
//! | model | used parameters (H = hidden size) | core |
//! |---|---|---|
//! | baseline | 0 | none: copies its input (predicts "no change") |
//! | linear | 605H + 302 (H = 302: 183,012) | none (embedding → readout) |
//! | feedforward | H² + 606H + 302 | h + Dropout(ReLU(Linear H→H)) |
//! | ctrnn | 2H² + 610H + 302 | LayerNorm; input/hidden Linear H→H, learned leak α = sigmoid(a), ReLU |
//! | lstm | 8H² + 615H + 302 | LayerNorm; one LSTM layer (the study's init) |
//! | transformer | 6H² + 615H + 302 | √H scaling, sinusoidal positions; one pre-norm causal encoder layer, feed-forward width H |
//! | attention | 4H² + 609H + 302 | √H scaling, sinusoidal positions; one causal multi-head attention |
//! | nlinear | 302(H + 1) | no embedding: a linear map per neuron over its last H steps, relative to the last (`lookback.rs`) |
//! | dlinear | 604(H + 1) | no embedding: per neuron, linear maps of the moving-average trend and the remainder of its last H steps |
//!
//! The study's own counts (`model_size::Counting::Study`, Table II) add what its code
//! registers and never calls; `model.json` carries both.

mod attention;
mod baseline;
mod blocks;
mod ctrnn;
mod feedforward;
mod linear;
pub mod lookback;
mod lstm;
mod transformer;
pub mod tsmixer;

use anyhow::{bail, Result};
use tch::{nn, Tensor};

pub use blocks::{positions, N_NEURONS_I64};

/// A next-step predictor.
pub trait Model: Send {
    /// (B, T, 302) → (B, T, 302): at each step, the prediction of the next one. `train`
    /// turns dropout on (masks from libtorch's generator, which the train node seeds).
    fn forward_t(&self, x: &Tensor, train: bool) -> Tensor;
}

pub use wormflow_stages::model_size::{
    has_hidden_size, hidden_for_target, n_params, warmup_steps, Counting, DEFAULT_LOOKBACK,
    FORECAST_MODELS, MODELS, STUDY_MODELS,
};

/// Heads of a multi-head attention of width h: the largest divisor of h not above 5 (the
/// study's `find_largest_divisor`).
pub fn heads_for(h: i64) -> i64 {
    (1..=5.min(h)).rev().find(|d| h % d == 0).unwrap_or(1)
}

/// A model that predicts the change from the current step: output = x + inner(x). It starts
/// near the Baseline (copy the input) and learns the difference; no extra parameters.
pub struct Residual(pub Box<dyn Model>);

impl Model for Residual {
    fn forward_t(&self, x: &Tensor, train: bool) -> Tensor {
        x + self.0.forward_t(x, train)
    }
}

/// The layers that make a model's output: zeroed at the start of a residual model, so that
/// output = input + 0 starts exactly at the Baseline. NLinear has none (it already predicts
/// relative to the last step; `residual` is refused for it at plan time).
pub fn output_layers(model: &str) -> &'static [&'static str] {
    match model {
        "baseline" | "nlinear" => &[],
        "dlinear" => &["seasonal", "trend"],
        "tsmixer" => &["projection"],
        _ => &["readout"],
    }
}

/// What shapes a model beyond its architecture.
#[derive(Debug, Clone, Copy)]
pub struct Options {
    pub hidden: i64,
    /// Past steps a forecasting model sees (`model_size::warmup_steps`); unused by the
    /// study's models.
    pub lookback: i64,
    /// Wrap in `Residual` (never the Baseline, which copies already).
    pub residual: bool,
    /// Dropout rate where the study has dropout.
    pub dropout: f64,
}

/// Create the model's parameters under `root` and return it.
pub fn build(model: &str, o: Options, root: &nn::Path) -> Result<Box<dyn Model>> {
    let (h, p, l) = (o.hidden, o.dropout, o.lookback);
    if has_hidden_size(model) && h < 1 {
        bail!("hidden size must be at least 1; got {h}");
    }
    if FORECAST_MODELS.contains(&model) && l < 1 {
        bail!("{model} needs a lookback of at least 1 step; got {l}");
    }
    let m: Box<dyn Model> = match model {
        "baseline" => return Ok(Box::new(baseline::Baseline)),
        "linear" => Box::new(linear::Linear::new(root, h)),
        "feedforward" => Box::new(feedforward::Feedforward::new(root, h, p)),
        "ctrnn" => Box::new(ctrnn::Ctrnn::new(root, h)),
        "lstm" => Box::new(lstm::Lstm::new(root, h)),
        "transformer" => Box::new(transformer::Transformer::new(root, h, p)),
        "attention" => Box::new(attention::Attention::new(root, h, p)),
        "nlinear" => Box::new(lookback::NLinear::new(root, l)),
        "dlinear" => Box::new(lookback::DLinear::new(root, l)),
        "tsmixer" => Box::new(tsmixer::TsMixer::new(root, h, l, p)),
        other => bail!("unknown model {other:?}; choose one of {}", MODELS.join(", ")),
    };
    Ok(if o.residual { Box::new(Residual(m)) } else { m })
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::{nn, Device, Kind};

    /// The lookback the count tests give the forecasting models (shorter than their windows).
    const LOOKBACK: i64 = 5;

    fn counted(model: &str, h: i64) -> i64 {
        let vs = nn::VarStore::new(Device::Cpu);
        let lookback = if FORECAST_MODELS.contains(&model) { LOOKBACK } else { 0 };
        let options = Options { hidden: h, residual: false, dropout: 0.1, lookback };
        let m = build(model, options, &vs.root()).unwrap();
        // The forward pass runs and keeps the shape, in both modes.
        for train in [false, true] {
            let y = m.forward_t(&Tensor::zeros([2, 7, 302], (Kind::Float, Device::Cpu)), train);
            assert_eq!(y.size(), [2, 7, 302]);
        }
        vs.trainable_variables().iter().map(|t| t.numel() as i64).sum()
    }

    #[test]
    fn used_counts_are_the_variables_the_models_create() {
        let _rng = crate::global_rng(); // building initialises from the global generator
        for h in [1, 8, 17, 64, 100, 234] {
            for m in MODELS {
                let used = n_params(m, h, LOOKBACK, Counting::Used).unwrap();
                assert_eq!(counted(m, h), used, "{m} at H={h}");
            }
        }
        assert_eq!(counted("linear", 302), 183_012);
    }

    #[test]
    fn the_lstm_starts_as_the_studys_init_weights() {
        let _rng = crate::global_rng();
        let vs = nn::VarStore::new(Device::Cpu);
        let h = 16;
        build(
            "lstm",
            Options { hidden: h, residual: false, dropout: 0.0, lookback: 0 },
            &vs.root(),
        )
        .unwrap();
        let v = vs.variables();
        // Recurrent weights orthogonal: W (4H × H) has orthonormal columns, WᵀW = I.
        let w = &v["lstm.weight_hh_l0"];
        let gram = w.transpose(0, 1).matmul(w);
        assert!(gram.allclose(&Tensor::eye(h, (Kind::Float, Device::Cpu)), 1e-4, 1e-5, false));
        // Input weights Xavier-uniform with gain 1.5: within ±1.5·√(6 / 5H), and filling it.
        let bound = 1.5 * (6.0 / (5 * h) as f64).sqrt();
        let max = v["lstm.weight_ih_l0"].abs().max().double_value(&[]);
        assert!(max <= bound && max > 0.9 * bound, "{max} vs {bound}");
        for b in ["lstm.bias_ih_l0", "lstm.bias_hh_l0"] {
            assert_eq!(v[b].abs().sum(Kind::Float).double_value(&[]), 0.0, "{b}");
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
