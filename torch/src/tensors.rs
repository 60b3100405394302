//! Windows of recordings as tensors, built once per node on the training device, and the
//! masked loss.
//!
//! A window of L + 1 steps gives an input x = steps 0..L and a target y = steps 1..L+1 (the
//! next step at every position). Neurons not recorded in the window's worm are 0 in x and y
//! and 0 in the mask, so they contribute nothing to the loss or its gradients.

use std::collections::HashMap;

use anyhow::{bail, Result};
use tch::{Device, Kind, Tensor};

use crate::models::Model;
use wormflow_stages::neurons::N_NEURONS;
use wormflow_stages::table::Worm;
use wormflow_stages::windows::Window;

pub struct WindowSet {
    /// (N, L, 302) inputs.
    pub x: Tensor,
    /// (N, L, 302) next-step targets.
    pub y: Tensor,
    /// (N, 1, 302): 1 where the neuron is recorded in the window's worm.
    pub mask: Tensor,
    /// Source dataset and worm of each window.
    pub datasets: Vec<String>,
    pub worms: Vec<String>,
}

impl WindowSet {
    pub fn len(&self) -> i64 {
        self.x.size()[0]
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Gather the windows of one set ("train" | "val") from the recordings.
pub fn window_set(
    worms: &[Worm],
    windows: &[Window],
    set: &str,
    device: Device,
) -> Result<WindowSet> {
    let by_name: HashMap<(&str, &str), &Worm> =
        worms.iter().map(|w| ((w.dataset.as_str(), w.worm.as_str()), w)).collect();
    let chosen: Vec<&Window> = windows.iter().filter(|w| w.set == set).collect();
    if chosen.is_empty() {
        bail!("the window table has no {set:?} windows; check the sample stage (n_windows, window length vs recording length)");
    }
    let steps = chosen[0].length as usize;
    if steps < 2 || chosen.iter().any(|w| w.length as usize != steps) {
        bail!("windows must all have the same length of at least 2 steps");
    }
    let mut data = vec![0f32; chosen.len() * steps * N_NEURONS];
    let mut mask = vec![0f32; chosen.len() * N_NEURONS];
    for (i, w) in chosen.iter().enumerate() {
        let worm = by_name.get(&(w.dataset.as_str(), w.worm.as_str())).ok_or_else(|| {
            anyhow::anyhow!("window of worm {}/{} has no recording among the inputs; the sample and preprocess stages disagree", w.dataset, w.worm)
        })?;
        let start = w.start as usize;
        if start + steps > worm.n_steps() {
            bail!(
                "window {}..{} of worm {}/{} runs past its {} steps",
                start,
                start + steps,
                w.dataset,
                w.worm,
                worm.n_steps()
            );
        }
        let mut any = false;
        for (n, trace) in worm.traces.iter().enumerate() {
            let Some(trace) = trace else { continue };
            any = true;
            mask[i * N_NEURONS + n] = 1.0;
            for k in 0..steps {
                data[(i * steps + k) * N_NEURONS + n] = trace[start + k];
            }
        }
        if !any {
            bail!("worm {}/{} has no recorded neuron (all masked); it cannot be trained on — drop it upstream", w.dataset, w.worm);
        }
    }
    let n = chosen.len() as i64;
    let all = Tensor::from_slice(&data).view([n, steps as i64, N_NEURONS as i64]).to_device(device);
    Ok(WindowSet {
        x: all.narrow(1, 0, steps as i64 - 1),
        y: all.narrow(1, 1, steps as i64 - 1),
        mask: Tensor::from_slice(&mask).view([n, 1, N_NEURONS as i64]).to_device(device),
        datasets: chosen.iter().map(|w| w.dataset.clone()).collect(),
        worms: chosen.iter().map(|w| w.worm.clone()).collect(),
    })
}

/// The model's next-step predictions, with unrecorded neurons zeroed in the input so their
/// values can never reach the loss or the gradients; `train` turns dropout on.
pub fn predict(model: &dyn Model, x: &Tensor, mask: &Tensor, train: bool) -> Tensor {
    model.forward_t(&(x * mask), train)
}

/// Sum of squared errors over recorded neurons, and how many terms it has.
pub fn masked_sse(pred: &Tensor, y: &Tensor, mask: &Tensor) -> (Tensor, Tensor) {
    let steps = pred.size()[1] as f64;
    let sse = ((pred - y).square() * mask).sum(Kind::Float);
    let count = mask.sum(Kind::Float) * steps;
    (sse, count)
}

/// Mean squared error over recorded neurons (the training loss).
pub fn masked_mse(pred: &Tensor, y: &Tensor, mask: &Tensor) -> Tensor {
    let (sse, count) = masked_sse(pred, y, mask);
    sse / count
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::nn;

    /// Loss and gradients of `model` on (x, y), masked.
    fn loss_and_grads(
        vs: &nn::VarStore,
        model: &dyn Model,
        x: &Tensor,
        y: &Tensor,
        mask: &Tensor,
    ) -> (f64, Vec<Tensor>) {
        for v in vs.trainable_variables() {
            let mut g = v.grad();
            if g.defined() {
                let _ = g.zero_();
            }
        }
        let loss = masked_mse(&predict(model, x, mask, false), y, mask);
        loss.backward();
        (loss.double_value(&[]), vs.trainable_variables().iter().map(|v| v.grad().copy()).collect())
    }

    #[test]
    fn unrecorded_neurons_change_neither_loss_nor_gradients() {
        let _rng = crate::global_rng();
        tch::manual_seed(0);
        for model in crate::models::MODELS.iter().filter(|m| **m != "baseline") {
            let vs = nn::VarStore::new(Device::Cpu);
            let m = crate::models::build(
                model,
                crate::models::Options { hidden: 8, residual: false, dropout: 0.1, lookback: 4 },
                &vs.root(),
            )
            .unwrap();
            let x = Tensor::randn([3, 10, 302], (Kind::Float, Device::Cpu));
            let y = Tensor::randn([3, 10, 302], (Kind::Float, Device::Cpu));
            let mask =
                Tensor::rand([3, 1, 302], (Kind::Float, Device::Cpu)).gt(0.5).to_kind(Kind::Float);
            let unrecorded = mask.ones_like() - &mask;
            let noise =
                Tensor::randn([3, 10, 302], (Kind::Float, Device::Cpu)) * 100.0 * &unrecorded;
            let (l1, g1) = loss_and_grads(&vs, &*m, &x, &y, &mask);
            let (l2, g2) = loss_and_grads(&vs, &*m, &(&x + &noise), &(&y - &noise), &mask);
            assert_eq!(l1, l2, "{model}: loss");
            for (a, b) in g1.iter().zip(&g2) {
                assert!(a.equal(b), "{model}: gradients differ");
            }
        }
    }
}
