//! How big each architecture is: parameter counts at a hidden size H (and, for the lookback
//! models, a lookback L), and the hidden size a parameter budget (`params_target`) picks. Pure arithmetic, needed at plan time (memory
//! checks) where libtorch is not loaded; the torch crate's tests check `Used` against the
//! variables its models really create, and a Python test checks `Study` against the study's
//! own classes.

use anyhow::{bail, Result};
use serde::{Deserialize, Serialize};

use crate::neurons::N_NEURONS;

/// The architectures `train` knows (see torch/src/models/mod.rs for what each is): the
/// study's seven, then the forecasting literature's.
pub const MODELS: &[&str] = &[
    "baseline",
    "linear",
    "feedforward",
    "ctrnn",
    "lstm",
    "transformer",
    "attention",
    "nlinear",
    "dlinear",
    "tsmixer",
];

/// The study's own architectures (checked against its classes, counted in its Table II).
pub const STUDY_MODELS: &[&str] = MODELS.split_at(7).0;

/// Models from the forecasting literature, as POCO runs them: NLinear and DLinear (Zeng et
/// al. 2023) and TSMixer (Chen et al. 2023). Each sees a fixed lookback of past steps.
pub const FORECAST_MODELS: &[&str] = MODELS.split_at(7).1;

/// The lookback a forecasting model gets when none is given: POCO's context of 48 steps.
pub const DEFAULT_LOOKBACK: i64 = 48;

/// Models whose size is their lookback alone (no hidden size).
pub fn has_hidden_size(model: &str) -> bool {
    !matches!(model, "baseline" | "nlinear" | "dlinear")
}

/// The study's Linear model has no hidden size of its own: 302 → 302 → 302.
pub const LINEAR_WIDTH: i64 = N_NEURONS as i64;

/// Which parameters a count includes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Counting {
    /// What the study's code registers (its `print_parameters`, the paper's Table II): also
    /// modules it never calls — every model's LayerNorm(H) where the core does not apply it,
    /// the Baseline's embedding, LayerNorm and placeholder, and the Transformer's encoder layer twice
    /// (`TransformerEncoder` deep-copies the layer it is given, and both stay registered).
    #[default]
    Study,
    /// Parameters the forward pass uses (what wormflow's models create and train).
    Used,
}

/// Parameter count of `model` at hidden size `h` and lookback `l` (the lookback models').
pub fn n_params(model: &str, h: i64, l: i64, counting: Counting) -> Result<i64> {
    let n = N_NEURONS as i64;
    let shared = 2 * n * h + h + n; // embedding (n→h with bias) + readout (h→n with bias)
    let norm = 2 * h; // LayerNorm(h): weight and bias
    let attention = 4 * h * h + 4 * h; // packed in-projection (3h × h) + out-projection, with biases
    let encoder = attention + 2 * (h * h + h) + 2 * norm; // + feed-forward of width h, two LayerNorms
    let study = counting == Counting::Study;
    let unused_norm = if study { norm } else { 0 };
    Ok(match model {
        // The study's NaivePredictor registers its backbone's embedding and LayerNorm at width
        // 302 and a placeholder parameter, and calls none of them.
        "baseline" if study => (n * n + n) + 2 * n + 1,
        "baseline" => 0,
        "linear" => shared + unused_norm,
        "feedforward" => shared + h * h + h + unused_norm,
        "ctrnn" => shared + norm + 2 * (h * h + h) + h, // + leak
        "lstm" => shared + norm + 8 * h * h + 8 * h,
        "transformer" => shared + encoder * if study { 2 } else { 1 } + unused_norm,
        "attention" => shared + attention + unused_norm,
        // A linear map over the last l steps, one per neuron (POCO's `separate_projs`),
        // with a bias; DLinear has two (trend and remainder). Not the study's: no unused parts.
        "nlinear" => n * (l + 1),
        "dlinear" => 2 * n * (l + 1),
        // One mixer layer: time mixing (LayerNorm over (l, n), Linear l → l) and feature
        // mixing (LayerNorm over (l, n), Linear n → h → n), then Linear l → 1 over time.
        "tsmixer" => 4 * l * n + (l * l + l) + (2 * n * h + h + n) + (l + 1),
        other => bail!("unknown model {other:?}; choose one of {}", MODELS.join(", ")),
    })
}

/// Positions at the start of a window whose prediction does not see a full lookback: a
/// forecasting model with lookback L needs L steps, so its first L − 1 predictions are not
/// its forecasts (see `models/lookback.rs`, `models/tsmixer.rs`). Training, validation and
/// evaluate's one-step errors leave them out (0 for the study's models, which see
/// everything before a position).
pub fn warmup_steps(model: &str, lookback: i64) -> i64 {
    if FORECAST_MODELS.contains(&model) {
        (lookback - 1).max(0)
    } else {
        0
    }
}

/// The smallest hidden size whose count reaches `target` — the rule that gives every hidden
/// size of the paper's Table II from 580,000 on the study's counts (Feedforward 516, CTRNN
/// 408, LSTM 234, Transformer 196, Attention 312); the nearest count would pick CTRNN 407.
pub fn hidden_for_target(
    model: &str,
    target: i64,
    lookback: i64,
    counting: Counting,
) -> Result<i64> {
    if model == "baseline" {
        return Ok(0);
    }
    if !has_hidden_size(model) {
        bail!("{model} has no hidden size to match params_target to (its size is its lookback); set lookback instead");
    }
    const LARGEST: i64 = 1 << 16;
    for h in 1..=LARGEST {
        if n_params(model, h, lookback, counting)? >= target {
            return Ok(h);
        }
    }
    bail!(
        "params_target = {target} needs a {model} wider than {LARGEST} units; lower params_target"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Table II of the paper: hidden size and parameter count at the ≈580K budget.
    const TABLE_II: &[(&str, i64, i64)] = &[
        ("feedforward", 516, 580_286),
        ("ctrnn", 408, 582_110),
        ("lstm", 234, 582_260),
        ("transformer", 196, 584_186),
        ("attention", 312, 580_310),
    ];

    #[test]
    fn the_study_counts_reproduce_table_two() {
        for &(model, h, count) in TABLE_II {
            assert_eq!(
                n_params(model, h, 0, Counting::Study).unwrap(),
                count,
                "{model} at H = {h}"
            );
            assert_eq!(
                hidden_for_target(model, 580_000, 0, Counting::Study).unwrap(),
                h,
                "{model}"
            );
        }
    }

    #[test]
    fn the_study_and_forecasting_lists_make_up_the_models() {
        assert_eq!(STUDY_MODELS.last(), Some(&"attention"));
        assert_eq!(FORECAST_MODELS, ["nlinear", "dlinear", "tsmixer"]);
    }

    #[test]
    fn used_counts_leave_out_what_the_study_never_calls() {
        let used = |m, h| n_params(m, h, 0, Counting::Used).unwrap();
        assert_eq!(used("feedforward", 516), 580_286 - 2 * 516);
        assert_eq!(used("transformer", 196), 6 * 196 * 196 + 615 * 196 + 302);
        assert_eq!(used("attention", 312), 580_310 - 2 * 312);
        assert_eq!(used("ctrnn", 408), 582_110);
        assert_eq!(used("lstm", 234), 582_260);
        assert_eq!(used("linear", LINEAR_WIDTH), 183_012);
        assert_eq!(n_params("linear", LINEAR_WIDTH, 0, Counting::Study).unwrap(), 183_012 + 604);
        assert_eq!(
            (used("baseline", 0), n_params("baseline", 0, 0, Counting::Study).unwrap()),
            (0, 92_111)
        );
        let at = |m, h, l| n_params(m, h, l, Counting::Used).unwrap();
        assert_eq!((at("nlinear", 0, 48), at("dlinear", 0, 48)), (14_798, 29_596));
        assert_eq!(at("tsmixer", 64, 48), 99_407);
        // On used counts the budget picks a wider Transformer and Attention.
        assert_eq!(hidden_for_target("transformer", 580_000, 0, Counting::Used).unwrap(), 264);
    }
}
