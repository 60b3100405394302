//! Many models of one architecture and shape as one computation: every weight carries a
//! leading model dimension M, linear maps are batched matmuls (`baddbmm`), the CTRNN and
//! LSTM cells step over the whole stack, attention runs over models × batch. Member m's
//! numbers depend on its own weights, data and dropout draws only — never on which other
//! models share the stack (each batched matmul is one matrix product per member; losses
//! and norms reduce per member) — so a node trained in a group of 16 gets the result it
//! gets in a group of 1 (tests/train.rs measures how close).
//!
//! The forward passes mirror `models/` (which evaluate uses); variables keep the names
//! `models/` gives them, so a member's slice is written as that model's weights.
//! `tests::stacked_forward_equals_each_model` checks both agree on the same weights.

use std::cell::Cell;
use std::collections::BTreeMap;

use anyhow::{bail, Result};
use rand::Rng;
use tch::{nn, Device, Kind, Tensor};

use crate::models::{heads_for, lookback, tsmixer, Options, N_NEURONS_I64};
use wormflow_stages::rng::stream;

/// The architectures the stack can run (all but the Baseline, which has nothing to train).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Arch {
    Linear,
    Feedforward,
    Ctrnn,
    Lstm,
    Transformer,
    Attention,
    NLinear,
    DLinear,
    TsMixer,
}

impl Arch {
    fn of(model: &str) -> Result<Arch> {
        Ok(match model {
            "linear" => Arch::Linear,
            "feedforward" => Arch::Feedforward,
            "ctrnn" => Arch::Ctrnn,
            "lstm" => Arch::Lstm,
            "transformer" => Arch::Transformer,
            "attention" => Arch::Attention,
            "nlinear" => Arch::NLinear,
            "dlinear" => Arch::DLinear,
            "tsmixer" => Arch::TsMixer,
            other => bail!("{other:?} cannot be trained as a stack"),
        })
    }
}

/// M models' trainable variables, each (M, …its shape…), leaves that require gradients.
pub struct Stack {
    arch: Arch,
    options: Options,
    /// Variable names in sorted order (as `models/` names them) and their stacked values.
    pub names: Vec<String>,
    pub params: Vec<Tensor>,
    /// The dtype matmuls compute in (`precision.rs`): float32, or bfloat16 from the
    /// float32 weights.
    pub compute: Kind,
}

/// The weights one forward pass uses: the whole stack, or the members present at a step.
pub struct Weights {
    by_name: BTreeMap<String, Tensor>,
    compute: Kind,
}

impl Weights {
    fn get(&self, name: &str) -> &Tensor {
        &self.by_name[name]
    }
}

/// Dropout masks, drawn per member from libtorch's generator re-seeded for each member,
/// optimizer step and call: a member's masks are its own whatever shares the stack.
pub struct Draws {
    /// (member's dropout seed, its optimizer step) for each member in the forward pass.
    pub members: Vec<(u64, u64)>,
    call: Cell<u64>,
}

impl Draws {
    pub fn new(members: Vec<(u64, u64)>) -> Draws {
        Draws { members, call: Cell::new(0) }
    }

    /// x (M', …) with each member's entries zeroed with probability p and scaled by 1/(1−p).
    fn dropout(&self, x: &Tensor, p: f64, train: bool) -> Tensor {
        if !train || p <= 0.0 {
            return x.shallow_clone();
        }
        let call = self.call.get();
        self.call.set(call + 1);
        let shape = &x.size()[1..];
        let masks: Vec<Tensor> = self
            .members
            .iter()
            .map(|&(seed, step)| {
                crate::train::with_generator(|| {
                    tch::manual_seed(stream(seed, "dropout", step).random::<i64>() ^ call as i64);
                    Tensor::rand(shape, (Kind::Float, x.device())).ge(p).to_kind(x.kind())
                })
            })
            .collect();
        x * Tensor::stack(&masks, 0) / (1.0 - p)
    }
}

/// a + x·w, batched over members: the product in the compute dtype, the sum in float32.
fn add_product(a: &Tensor, x: &Tensor, w: &Tensor, compute: Kind) -> Tensor {
    if compute == Kind::Float {
        a.baddbmm(x, w, 1.0, 1.0)
    } else {
        a + x.to_kind(compute).bmm(&w.to_kind(compute)).to_kind(Kind::Float)
    }
}

/// x·y (batched) in the compute dtype, the result in float32.
fn product(x: &Tensor, y: &Tensor, compute: Kind) -> Tensor {
    if compute == Kind::Float {
        x.matmul(y)
    } else {
        x.to_kind(compute).matmul(&y.to_kind(compute)).to_kind(Kind::Float)
    }
}

/// x (M, N, in) · w (M, out, in)ᵀ + b (M, out): one linear map per member.
fn linear(x: &Tensor, w: &Weights, name: &str) -> Tensor {
    linear_with(x, w, &format!("{name}.weight"), &format!("{name}.bias"))
}

/// LayerNorm over the last dimension with each member's own gain and shift; x (M, N, H).
fn layer_norm(x: &Tensor, w: &Weights, name: &str) -> Tensor {
    let h = *x.size().last().expect("(M, N, H)");
    let gain = w.get(&format!("{name}.weight")).unsqueeze(1);
    let shift = w.get(&format!("{name}.bias")).unsqueeze(1);
    x.layer_norm([h], None::<Tensor>, None::<Tensor>, 1e-5, false) * gain + shift
}

impl Stack {
    /// M models built as `models::build` builds them, member m from `seeds[m]` (so its
    /// initial weights are those of the same node trained alone), stacked on `device`.
    pub fn new(model: &str, options: Options, seeds: &[u64], device: Device) -> Result<Stack> {
        let arch = Arch::of(model)?;
        let mut members: Vec<BTreeMap<String, Tensor>> = Vec::with_capacity(seeds.len());
        for &seed in seeds {
            let vs = nn::VarStore::new(device);
            crate::train::seeded_build(model, options, &vs, seed)?;
            members.push(vs.variables().into_iter().map(|(k, v)| (k, v.detach())).collect());
        }
        let names: Vec<String> = members[0].keys().cloned().collect();
        let params = names
            .iter()
            .map(|name| {
                let parts: Vec<&Tensor> = members.iter().map(|m| &m[name]).collect();
                Tensor::stack(&parts, 0).set_requires_grad(true)
            })
            .collect();
        Ok(Stack { arch, options, names, params, compute: Kind::Float })
    }

    pub fn len(&self) -> i64 {
        self.params[0].size()[0]
    }

    /// The past steps the members see (forecasting models; 0 for the study's).
    pub fn lookback(&self) -> i64 {
        self.options.lookback
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The weights of the members at `present` (indices into the stack), or all of them.
    pub fn weights(&self, present: Option<&Tensor>) -> Weights {
        let by_name = self
            .names
            .iter()
            .zip(&self.params)
            .map(|(n, p)| {
                let t = match present {
                    Some(idx) => p.index_select(0, idx),
                    None => p.shallow_clone(),
                };
                (n.clone(), t)
            })
            .collect();
        Weights { by_name, compute: self.compute }
    }

    /// Member m's variables by name, copied to the CPU (its weights file, its best epoch).
    pub fn member(&self, m: i64) -> Vec<(String, Tensor)> {
        tch::no_grad(|| {
            self.names
                .iter()
                .zip(&self.params)
                .map(|(n, p)| (n.clone(), p.get(m).detach().to_device(Device::Cpu).copy()))
                .collect()
        })
    }

    /// x (M', B, T, 302) → next-step predictions (M', B, T, 302); M' = the members `w` holds.
    pub fn forward(&self, w: &Weights, x: &Tensor, train: bool, draws: &Draws) -> Tensor {
        let [m, b, t, n] = x.size()[..] else { panic!("(M, B, T, 302)") };
        if let Some(out) = self.lookback_forward(w, x, train, draws) {
            return if self.options.residual { x + out } else { out };
        }
        let h = self.options.hidden;
        let p = self.options.dropout;
        let flat = x.reshape([m, b * t, n]);
        let e = linear(&flat, w, "embedding"); // (M, B·T, H)
        let core = match self.arch {
            Arch::NLinear | Arch::DLinear | Arch::TsMixer => {
                unreachable!("lookback_forward answered")
            }
            Arch::Linear => e,
            Arch::Feedforward => {
                let inner = linear(&e, w, "hidden").relu();
                &e + draws.dropout(&inner, p, train)
            }
            Arch::Ctrnn => {
                // The input drive of every step in one batched matmul; only the recurrent
                // matmul and the leaky update step through time.
                let drive = linear(&layer_norm(&e, w, "embedding_norm"), w, "input");
                let drive = drive.reshape([m, b, t, h]);
                let alpha = w.get("leak").sigmoid().unsqueeze(1); // (M, 1, H)
                let w_hh = w.get("recurrent.weight").transpose(1, 2);
                let b_hh = w.get("recurrent.bias").unsqueeze(1);
                let mut state = Tensor::zeros([m, b, h], (x.kind(), x.device()));
                let mut states = Vec::with_capacity(t as usize);
                // unbind, not select per step: its backward stacks the steps' gradients once
                // instead of scattering each into a zeroed (M, B, T, H) tensor.
                for input in drive.unbind(2) {
                    let target = (input + add_product(&b_hh, &state, &w_hh, w.compute)).relu();
                    state = state.lerp_tensor(&target, &alpha);
                    states.push(state.shallow_clone());
                }
                Tensor::stack(&states, 2).reshape([m, b * t, h])
            }
            Arch::Lstm if m == 1 && w.compute == Kind::Float => {
                // A stack of one (a node alone): libtorch's fused LSTM (cuDNN on a GPU), 1.3×
                // faster than the cell below on CPU; the two agree up to rounding.
                let e = layer_norm(&e, w, "embedding_norm").reshape([b, t, h]);
                let weights: Vec<Tensor> =
                    ["weight_ih_l0", "weight_hh_l0", "bias_ih_l0", "bias_hh_l0"]
                        .iter()
                        .map(|n| w.get(&format!("lstm.{n}")).get(0))
                        .collect();
                let zeros = Tensor::zeros([1, b, h], (x.kind(), x.device()));
                let (out, _, _) = e.lstm(
                    &[zeros.shallow_clone(), zeros],
                    &weights,
                    true,
                    1,
                    0.0,
                    train,
                    false,
                    true,
                );
                out.reshape([1, b * t, h])
            }
            Arch::Lstm => {
                // PyTorch's LSTM: gates i, f, g, o from W_ih x + b_ih + W_hh h + b_hh.
                let e = layer_norm(&e, w, "embedding_norm");
                let gates_in = linear_with(&e, w, "lstm.weight_ih_l0", "lstm.bias_ih_l0")
                    + w.get("lstm.bias_hh_l0").unsqueeze(1);
                let gates_in = gates_in.reshape([m, b, t, 4 * h]);
                let w_hh = w.get("lstm.weight_hh_l0").transpose(1, 2);
                let mut hidden = Tensor::zeros([m, b, h], (x.kind(), x.device()));
                let mut cell = hidden.zeros_like();
                let mut outs = Vec::with_capacity(t as usize);
                for input in gates_in.unbind(2) {
                    let gates = add_product(&input, &hidden, &w_hh, w.compute);
                    let g = gates.chunk(4, -1);
                    cell = g[1].sigmoid() * &cell + g[0].sigmoid() * g[2].tanh();
                    hidden = g[3].sigmoid() * cell.tanh();
                    outs.push(hidden.shallow_clone());
                }
                Tensor::stack(&outs, 2).reshape([m, b * t, h])
            }
            Arch::Attention => {
                let z = draws.dropout(&encode_positions(&e, b, t, h), p, train);
                self.attention(&z, w, "attention", [m, b, t], train, draws)
            }
            Arch::Transformer => {
                let z = draws.dropout(&encode_positions(&e, b, t, h), p, train);
                let a = self.attention(
                    &layer_norm(&z, w, "encoder.norm1"),
                    w,
                    "encoder.attention",
                    [m, b, t],
                    train,
                    draws,
                );
                let z = &z + draws.dropout(&a, p, train);
                let inner = linear(&layer_norm(&z, w, "encoder.norm2"), w, "encoder.ff1").relu();
                let inner = draws.dropout(&inner, p, train);
                &z + draws.dropout(&linear(&inner, w, "encoder.ff2"), p, train)
            }
        };
        let out = linear(&core, w, "readout").reshape([m, b, t, N_NEURONS_I64]);
        if self.options.residual {
            x + out
        } else {
            out
        }
    }

    /// The forecasting models over the stack: NLinear and DLinear (`models::lookback`) as one
    /// grouped convolution with each member's effective kernels, TSMixer
    /// (`models::tsmixer`) with each member's dropout draws; None for the study's
    /// architectures. These compute in float32 whatever the precision.
    fn lookback_forward(
        &self,
        w: &Weights,
        x: &Tensor,
        train: bool,
        draws: &Draws,
    ) -> Option<Tensor> {
        if self.arch == Arch::TsMixer {
            let get = |name: &str| w.get(name).shallow_clone();
            let weights = tsmixer::MixerWeights { get: &get };
            let p = self.options.dropout;
            let drop = |t: &Tensor| draws.dropout(t, p, train);
            return Some(tsmixer::forward(&weights, x, self.options.lookback, &drop));
        }
        let (kernel, bias) = match self.arch {
            Arch::NLinear => (
                lookback::nlinear_kernel(w.get("linear.weight")),
                w.get("linear.bias").shallow_clone(),
            ),
            Arch::DLinear => (
                lookback::dlinear_kernel(w.get("seasonal.weight"), w.get("trend.weight")),
                w.get("seasonal.bias") + w.get("trend.bias"),
            ),
            _ => return None,
        };
        Some(lookback::causal_conv(x, &kernel, &bias))
    }

    /// Causal multi-head self-attention over models × batch (`blocks::CausalSelfAttention`,
    /// stacked). With dropout while training the attention weights are formed explicitly,
    /// so each member's masks are its own; otherwise PyTorch's fused kernel.
    fn attention(
        &self,
        z: &Tensor,
        w: &Weights,
        name: &str,
        [m, b, t]: [i64; 3],
        train: bool,
        draws: &Draws,
    ) -> Tensor {
        let h = self.options.hidden;
        let heads = heads_for(h);
        let d = h / heads;
        let qkv = linear(z, w, &format!("{name}.in_proj"))
            .view([m * b, t, 3, heads, d])
            .permute([2, 0, 3, 1, 4]);
        let (q, k, v) = (qkv.get(0), qkv.get(1), qkv.get(2)); // (M·B, heads, T, d)
        let p = self.options.dropout;
        let y = if train && p > 0.0 {
            let scores = product(&q, &k.transpose(-2, -1), w.compute) / (d as f64).sqrt();
            let future = Tensor::ones([t, t], (Kind::Bool, z.device())).triu(1);
            let weights = scores.masked_fill(&future, f64::NEG_INFINITY).softmax(-1, None);
            let weights = draws.dropout(&weights.view([m, b, heads, t, t]), p, train);
            product(&weights.view([m * b, heads, t, t]), &v, w.compute)
        } else {
            let c = w.compute;
            Tensor::scaled_dot_product_attention(
                &q.to_kind(c),
                &k.to_kind(c),
                &v.to_kind(c),
                None::<Tensor>,
                0.0,
                true,
                None::<f64>,
                false,
            )
            .to_kind(Kind::Float)
        };
        let y = y.transpose(1, 2).contiguous().view([m, b * t, h]);
        linear(&y, w, &format!("{name}.out_proj"))
    }
}

fn linear_with(x: &Tensor, w: &Weights, weight: &str, bias: &str) -> Tensor {
    add_product(&w.get(bias).unsqueeze(1), x, &w.get(weight).transpose(1, 2), w.compute)
}

/// The study's `PositionalEncoding` over the stack: e (M, B·T, H) scaled by √H plus
/// sinusoidal positions (dropout is the caller's).
fn encode_positions(e: &Tensor, b: i64, t: i64, h: i64) -> Tensor {
    let m = e.size()[0];
    let pos = crate::models::positions(t, h, e);
    (e.view([m, b, t, h]) * (h as f64).sqrt() + pos.view([1, 1, t, h])).view([m, b * t, h])
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::models::{build, Model, MODELS};

    /// Each member of a stack predicts what its own model (built from the same seed, as
    /// evaluate builds it) predicts.
    #[test]
    fn stacked_forward_equals_each_model() {
        let _rng = crate::global_rng();
        let x = {
            tch::manual_seed(7);
            Tensor::randn([3, 5, 11, 302], (Kind::Float, Device::Cpu))
        };
        for model in MODELS.iter().filter(|m| **m != "baseline") {
            for residual in [false, true] {
                let options = Options { hidden: 12, residual, dropout: 0.1, lookback: 5 };
                let seeds = [3, 1, 4];
                let stack = Stack::new(model, options, &seeds, Device::Cpu).unwrap();
                let draws = Draws::new(vec![(0, 0); 3]);
                let y = tch::no_grad(|| stack.forward(&stack.weights(None), &x, false, &draws));
                for (m, &seed) in seeds.iter().enumerate() {
                    let vs = nn::VarStore::new(Device::Cpu);
                    let alone: Box<dyn Model> =
                        crate::train::seeded_build(model, options, &vs, seed).unwrap();
                    let expected = tch::no_grad(|| alone.forward_t(&x.get(m as i64), false));
                    let got = y.get(m as i64);
                    let diff = (&got - &expected).abs().max().double_value(&[]);
                    assert!(diff < 1e-5, "{model} (residual {residual}) member {m}: {diff}");
                }
                let _ = build; // the same constructors
            }
        }
    }

    /// A member's prediction and gradients do not depend on the other members.
    #[test]
    fn a_member_is_independent_of_the_rest_of_the_stack() {
        let _rng = crate::global_rng();
        tch::manual_seed(1);
        let x = Tensor::randn([4, 3, 9, 302], (Kind::Float, Device::Cpu));
        for model in MODELS.iter().filter(|m| **m != "baseline") {
            let options = Options { hidden: 10, residual: false, dropout: 0.1, lookback: 4 };
            let big = Stack::new(model, options, &[5, 6, 7, 8], Device::Cpu).unwrap();
            let one = Stack::new(model, options, &[7], Device::Cpu).unwrap();
            let run = |s: &Stack, x: &Tensor, members: Vec<(u64, u64)>| {
                let y = s.forward(&s.weights(None), x, true, &Draws::new(members));
                y.square().sum(Kind::Float).backward();
                (y, s.params.iter().map(|p| p.grad().copy()).collect::<Vec<_>>())
            };
            let (y4, g4) = run(&big, &x, vec![(5, 1), (6, 1), (7, 1), (8, 1)]);
            let (y1, g1) = run(&one, &x.narrow(0, 2, 1), vec![(7, 1)]);
            let relative = |a: &Tensor, b: &Tensor| {
                (a - b).abs().max().double_value(&[]) / b.abs().max().double_value(&[]).max(1e-30)
            };
            // Not always bit for bit: a batched matmul of one may take another BLAS path
            // (threads split the work differently) than one of four; rounding only.
            let diff = relative(&y4.get(2), &y1.get(0));
            assert!(diff < 1e-6, "{model}: predictions differ by {diff} (relative)");
            for ((a, b), name) in g4.iter().zip(&g1).zip(&one.names) {
                let diff = relative(&a.get(2), &b.get(0));
                assert!(diff < 1e-5, "{model}: gradient of {name} differs by {diff} (relative)");
            }
        }
    }
}
