//! NLinear and DLinear (Zeng et al. 2023, "Are Transformers Effective for Time Series
//! Forecasting?"), as POCO runs them (Duan et al. 2025, models/single_session_models.py: one
//! map per neuron, `separate_projs`): a linear map over a neuron's last C steps, C being the
//! model's `hidden` size (its lookback; POCO's 48).
//!
//! POCO's classes map a context of C steps to the next P steps at once. Here each predicts
//! the next step at every position of a sequence from the C steps up to it — the study's
//! next-step frame, so they train, validate and roll out like the study's models — with the
//! sequence's first step repeated before its start, so early positions see a full lookback.
//! Both are linear in their window, so each is one causal convolution over time with an
//! effective kernel per neuron (`causal_conv`):
//! - NLinear subtracts the window's last value, maps the window and adds the value back:
//!   W·(x − x_last) + b + x_last, i.e. the kernel W with 1 − ΣW added at the last step.
//! - DLinear splits the window into a moving-average trend (Autoformer's `series_decomp`:
//!   k = C/4·2 + 1 steps, the window's edge values repeated) and the remainder and maps each:
//!   W_s·(x − A·x) + W_t·A·x + b_s + b_t, i.e. the kernel W_s + (W_t − W_s)·A.
//!
//! torch/tests/forecasting_models.py checks both against the literal PyTorch classes applied
//! window by window.

use tch::{nn, Device, Kind, Tensor};

use super::blocks::N_NEURONS_I64;

/// x (M, B, T, N), kernel (M, N, C) over the C steps up to each position (oldest first),
/// bias (M, N) → (M, B, T, N): out[t] = Σ_j kernel[j] · x[t − C + 1 + j] + bias, the first
/// step standing in for steps before the sequence. One grouped convolution for all members
/// and neurons.
pub fn causal_conv(x: &Tensor, kernel: &Tensor, bias: &Tensor) -> Tensor {
    let [m, b, t, n] = x.size()[..] else { panic!("(M, B, T, N)") };
    let c = kernel.size()[2];
    let channels = m * n;
    let seq = x.permute([1, 0, 3, 2]).reshape([b, channels, t]);
    let before = seq.narrow(2, 0, 1).expand([b, channels, c - 1], false);
    let padded = Tensor::cat(&[before, seq], 2);
    let weight = kernel.reshape([channels, 1, c]);
    padded
        .conv1d(&weight, Some(bias.reshape([channels])), [1], [0], [1], channels)
        .reshape([b, m, n, t])
        .permute([1, 0, 3, 2])
        .contiguous() // as the other models return it (callers view it)
}

/// NLinear's effective kernel: the map of the window minus its last value, plus that value.
pub fn nlinear_kernel(weight: &Tensor) -> Tensor {
    let c = *weight.size().last().expect("(…, C)");
    let carry = 1.0 - weight.sum_dim_intlist([-1i64].as_slice(), true, Kind::Float);
    let last = Tensor::zeros([c], (Kind::Float, weight.device()));
    let _ = last.narrow(0, c - 1, 1).fill_(1.0);
    weight + carry * last
}

/// The moving-average window of DLinear's trend over a lookback of c steps (POCO's
/// `seq_len // 4 * 2 + 1`).
pub fn trend_window(c: i64) -> i64 {
    c / 4 * 2 + 1
}

/// The trend of a window of c steps as a matrix: trend = A · window, the average of the
/// k = `trend_window(c)` steps centred on each step, the window's first and last values
/// repeated past its edges.
pub fn moving_average(c: i64, device: Device) -> Tensor {
    let k = trend_window(c);
    let half = (k - 1) / 2;
    let mut a = vec![0f32; (c * c) as usize];
    for i in 0..c {
        for d in -half..=half {
            let j = (i + d).clamp(0, c - 1);
            a[(i * c + j) as usize] += 1.0 / k as f32;
        }
    }
    Tensor::from_slice(&a).view([c, c]).to_device(device)
}

/// DLinear's effective kernel: W_s·(I − A) + W_t·A, weights (…, N, C).
pub fn dlinear_kernel(seasonal: &Tensor, trend: &Tensor) -> Tensor {
    let c = *seasonal.size().last().expect("(…, C)");
    let a = moving_average(c, seasonal.device());
    seasonal + (trend - seasonal).matmul(&a)
}

/// A per-neuron map over c steps: weight (302, c) and bias (302), PyTorch's `nn.Linear`
/// initialisation (uniform in ±1/√c) unless `weight_init` says otherwise.
fn per_neuron(root: &nn::Path, name: &str, c: i64, weight_init: Option<nn::Init>) -> [Tensor; 2] {
    let bound = 1.0 / (c as f64).sqrt();
    let uniform = nn::Init::Uniform { lo: -bound, up: bound };
    let p = root / name;
    [
        p.var("weight", &[N_NEURONS_I64, c], weight_init.unwrap_or(uniform)),
        p.var("bias", &[N_NEURONS_I64], uniform),
    ]
}

fn apply(x: &Tensor, kernel: &Tensor, bias: &Tensor) -> Tensor {
    causal_conv(&x.unsqueeze(0), &kernel.unsqueeze(0), &bias.unsqueeze(0)).squeeze_dim(0)
}

pub struct NLinear {
    linear: [Tensor; 2],
}

impl NLinear {
    pub fn new(root: &nn::Path, c: i64) -> Self {
        NLinear { linear: per_neuron(root, "linear", c, None) }
    }
}

impl super::Model for NLinear {
    fn forward_t(&self, x: &Tensor, _train: bool) -> Tensor {
        apply(x, &nlinear_kernel(&self.linear[0]), &self.linear[1])
    }
}

pub struct DLinear {
    seasonal: [Tensor; 2],
    trend: [Tensor; 2],
}

impl DLinear {
    /// Both maps start as the window's mean (weights 1/c), as POCO's DLinear.
    pub fn new(root: &nn::Path, c: i64) -> Self {
        let mean = Some(nn::Init::Const(1.0 / c as f64));
        DLinear {
            seasonal: per_neuron(root, "seasonal", c, mean),
            trend: per_neuron(root, "trend", c, mean),
        }
    }
}

impl super::Model for DLinear {
    fn forward_t(&self, x: &Tensor, _train: bool) -> Tensor {
        let kernel = dlinear_kernel(&self.seasonal[0], &self.trend[0]);
        apply(x, &kernel, &(&self.seasonal[1] + &self.trend[1]))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Each row of the moving average sums to one, and inside the window it is the plain
    /// average of k neighbours.
    #[test]
    fn the_trend_is_a_moving_average_with_repeated_edges() {
        let a = moving_average(12, Device::Cpu); // k = 7
        let rows = a.sum_dim_intlist([1i64].as_slice(), false, Kind::Float);
        assert!(rows.allclose(&Tensor::ones([12], (Kind::Float, Device::Cpu)), 1e-6, 1e-6, false));
        assert!((a.double_value(&[5, 2]) - 1.0 / 7.0).abs() < 1e-7);
        assert_eq!(a.double_value(&[5, 9]), 0.0);
        // The first row counts the first value four times (three repeats and itself).
        assert!((a.double_value(&[0, 0]) - 4.0 / 7.0).abs() < 1e-6);
    }

    /// The convolution is causal: a change at step s moves no prediction before s.
    #[test]
    fn no_position_sees_the_future() {
        let _rng = crate::global_rng();
        tch::manual_seed(3);
        let x = Tensor::randn([1, 2, 20, 5], (Kind::Float, Device::Cpu));
        let kernel = Tensor::randn([1, 5, 6], (Kind::Float, Device::Cpu));
        let bias = Tensor::zeros([1, 5], (Kind::Float, Device::Cpu));
        let before = causal_conv(&x, &kernel, &bias);
        let moved = x.copy();
        let _ = moved.narrow(2, 12, 1).fill_(9.0);
        let after = causal_conv(&moved, &kernel, &bias);
        let diff =
            (&after - &before).abs().sum_dim_intlist([0i64, 1, 3].as_slice(), false, Kind::Float);
        let changed: Vec<f64> = Vec::try_from(diff).unwrap();
        assert!(changed[..12].iter().all(|&d| d == 0.0), "{changed:?}");
        assert!(changed[12..18].iter().all(|&d| d > 0.0), "{changed:?}");
        assert!(changed[18..].iter().all(|&d| d == 0.0), "{changed:?}");
    }
}
