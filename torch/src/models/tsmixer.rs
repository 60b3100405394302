//! TSMixer (Chen et al. 2023, "TSMixer: An All-MLP Architecture for Time Series
//! Forecasting"), as POCO runs it (zapbench_scripts/tsmixer.py, adapted from
//! ditschuk/pytorch-tsmixer): over a window of the last L steps (L × 302), one mixer layer —
//! time mixing (x + Dropout(ReLU(Linear L → L over time, per neuron)), then a norm over the
//! whole window) and feature mixing (x + Dropout(Linear H → 302 (Dropout(ReLU(Linear 302 → H
//! (norm(x))))))) — then a Linear L → 1 over time: the next step. H is the model's `hidden`
//! (POCO's `ff_dim`, 64), L its lookback (48).
//!
//! Differences from POCO's, on purpose (README, model card):
//! - LayerNorm over (L, 302) in place of the library's default `TimeBatchNorm2d` (batch
//!   statistics over L·302 features, running averages at evaluation): the library's own
//!   `norm_type = "layer"` option. Batch statistics would make a member's prediction depend on
//!   the rest of its batch and add running averages outside the weights; a stacked member
//!   must depend on its own weights and data only.
//! - One step out (the study's next-step frame, rolled out for longer forecasts) where POCO
//!   emits its 16 at once; `horizon_train = k` trains it on k-step rollouts.
//! - One mixer layer: what POCO's default `num_blocks = 2` builds (the library makes
//!   `num_blocks − 1` layers).
//!
//! In a sequence of T steps it forecasts each position that has L steps up to it (positions
//! L − 1 …); earlier positions have no full window and are returned as their input (copy
//! last), never scored (`model_size::warmup_steps`).

use tch::{nn, Tensor};

use super::blocks::N_NEURONS_I64;

/// The variables of a TSMixer, each with a leading model dimension M (one model: M = 1).
pub struct MixerWeights<'a> {
    pub get: &'a dyn Fn(&str) -> Tensor,
}

/// x (M, B, T, N) → (M, B, T, N): the next-step forecast at every position with a full
/// window of `lookback` steps, the input itself at the others. `dropout` masks a tensor
/// whose first dimension is M (each member's own draws when stacked).
pub fn forward(
    w: &MixerWeights,
    x: &Tensor,
    lookback: i64,
    dropout: &dyn Fn(&Tensor) -> Tensor,
) -> Tensor {
    let [m, b, t, n] = x.size()[..] else { panic!("(M, B, T, N)") };
    let l = lookback;
    let s = t - l + 1; // positions with a full window
    if s < 1 {
        return x.shallow_clone();
    }
    // Every window of L steps ending at a forecast position: (M, B·S, L, N).
    let windows = x.unfold(2, l, 1).permute([0, 1, 2, 4, 3]).reshape([m, b * s, l, n]);
    let norm = |z: &Tensor, name: &str| {
        let gain = (w.get)(&format!("{name}.weight")).unsqueeze(1);
        let shift = (w.get)(&format!("{name}.bias")).unsqueeze(1);
        z.layer_norm([l, n], None::<Tensor>, None::<Tensor>, 1e-5, false) * gain + shift
    };
    // (M, R, K) · (M, out, K)ᵀ + (M, out): one linear map per member over the last dimension.
    let linear = |z: &Tensor, name: &str| {
        let size = z.size();
        let k = *size.last().expect("(M, …, K)");
        let weight = (w.get)(&format!("{name}.weight"));
        let bias = (w.get)(&format!("{name}.bias"));
        let out = weight.size()[1];
        let flat = z.reshape([m, -1, k]);
        let y = bias.unsqueeze(1).baddbmm(&flat, &weight.transpose(1, 2), 1.0, 1.0);
        let mut shape = size.clone();
        *shape.last_mut().expect("(M, …, K)") = out;
        y.reshape(shape.as_slice())
    };
    // Time mixing: per neuron, over the window's steps.
    let over_time = windows.transpose(2, 3); // (M, R, N, L)
    let mixed = dropout(&linear(&over_time, "time.fc1").relu()).transpose(2, 3);
    let z = norm(&(&windows + mixed), "time.norm");
    // Feature mixing: per step, over neurons (normalised before, as POCO's default).
    let inner = dropout(&linear(&norm(&z, "feature.norm"), "feature.fc1").relu());
    let z = &z + dropout(&linear(&inner, "feature.fc2"));
    // The next step from the window: Linear L → 1 over time, per neuron.
    let next = linear(&z.transpose(2, 3), "projection").reshape([m, b, s, n]);
    let warmup = x.narrow(2, 0, l - 1);
    Tensor::cat(&[warmup, next], 2)
}

pub struct TsMixer {
    vars: Vec<(String, Tensor)>,
    lookback: i64,
    dropout: f64,
}

impl TsMixer {
    /// Created as PyTorch creates its modules: Linear layers uniform in ±1/√fan-in (tch's
    /// default is the same rule), LayerNorm gains 1 and shifts 0.
    pub fn new(root: &nn::Path, hidden: i64, lookback: i64, dropout: f64) -> Self {
        let (h, l, n) = (hidden, lookback, N_NEURONS_I64);
        let mut vars = Vec::new();
        // "time.fc1" → root / "time" / "fc1" (a path part cannot hold a dot).
        let path = |name: &str| {
            let mut parts = name.split('.');
            let first = parts.next().expect("a name");
            parts.fold(root / first, |p, part| &p / part)
        };
        let mut linear = |name: &str, input: i64, output: i64| {
            let layer = nn::linear(path(name), input, output, Default::default());
            vars.push((format!("{name}.weight"), layer.ws.shallow_clone()));
            vars.push((format!("{name}.bias"), layer.bs.expect("a bias").shallow_clone()));
        };
        linear("time.fc1", l, l);
        linear("feature.fc1", n, h);
        linear("feature.fc2", h, n);
        linear("projection", l, 1);
        for name in ["time.norm", "feature.norm"] {
            let p = path(name);
            vars.push((format!("{name}.weight"), p.var("weight", &[l, n], nn::Init::Const(1.0))));
            vars.push((format!("{name}.bias"), p.var("bias", &[l, n], nn::Init::Const(0.0))));
        }
        TsMixer { vars, lookback: l, dropout }
    }
}

impl super::Model for TsMixer {
    fn forward_t(&self, x: &Tensor, train: bool) -> Tensor {
        let get = |name: &str| {
            let (_, v) = self.vars.iter().find(|(n, _)| n == name).expect("a TSMixer variable");
            v.unsqueeze(0)
        };
        let weights = MixerWeights { get: &get };
        let p = self.dropout;
        let drop = |t: &Tensor| t.dropout(p, train);
        forward(&weights, &x.unsqueeze(0), self.lookback, &drop).squeeze_dim(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::{Device, Kind};

    /// A position's forecast depends on its own window only: changing step s moves the
    /// forecasts of positions s … s + L − 1 and no other.
    #[test]
    fn each_forecast_sees_its_window_and_nothing_else() {
        let _rng = crate::global_rng();
        tch::manual_seed(5);
        let vs = nn::VarStore::new(Device::Cpu);
        let model = TsMixer::new(&vs.root(), 8, 6, 0.0);
        let x = Tensor::randn([2, 20, 302], (Kind::Float, Device::Cpu));
        let before = super::super::Model::forward_t(&model, &x, false);
        let moved = x.copy();
        let _ = moved.narrow(1, 10, 1).fill_(3.0);
        let after = super::super::Model::forward_t(&model, &moved, false);
        let diff =
            (&after - &before).abs().sum_dim_intlist([0i64, 2].as_slice(), false, Kind::Float);
        let changed: Vec<f64> = Vec::try_from(diff).unwrap();
        assert!(changed[..10].iter().all(|&d| d == 0.0), "{changed:?}");
        assert!(changed[10..16].iter().all(|&d| d > 0.0), "{changed:?}");
        assert!(changed[16..].iter().all(|&d| d == 0.0), "{changed:?}");
        // The first L − 1 positions are the input (no full window).
        assert!(before.narrow(1, 0, 5).equal(&x.narrow(1, 0, 5)));
    }
}
