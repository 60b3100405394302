//! Continuous-time RNN, Euler-discretised with a learned per-unit leak:
//! hₜ = (1 − α) ⊙ hₜ₋₁ + α ⊙ ReLU(W_in eₜ + W_hh hₜ₋₁), α = sigmoid(a), e = LayerNorm(embedding(x)).

use tch::nn::{self, Module};
use tch::Tensor;

use super::blocks::{embedding, layer_norm, readout};

pub struct Ctrnn {
    embedding: nn::Linear,
    norm: nn::LayerNorm,
    input: nn::Linear,
    recurrent: nn::Linear,
    leak: Tensor,
    readout: nn::Linear,
}

impl Ctrnn {
    pub fn new(root: &nn::Path, h: i64) -> Self {
        Ctrnn {
            embedding: embedding(root, h),
            norm: layer_norm(root, "embedding_norm", h),
            input: nn::linear(root / "input", h, h, Default::default()),
            recurrent: nn::linear(root / "recurrent", h, h, Default::default()),
            // The study's CTRNN starts its leak logit at 1 (α = sigmoid(1) ≈ 0.73).
            leak: root.var("leak", &[h], nn::Init::Const(1.0)),
            readout: readout(root, h),
        }
    }
}

impl super::Model for Ctrnn {
    fn forward_t(&self, x: &Tensor, _train: bool) -> Tensor {
        let drive = self.input.forward(&self.norm.forward(&self.embedding.forward(x))); // (B, T, H), all steps at once
        let alpha = self.leak.sigmoid();
        let (b, _, h) = drive.size3().expect("(B, T, H)");
        let mut state = Tensor::zeros([b, h], (drive.kind(), drive.device()));
        let steps = drive.unbind(1);
        let mut states = Vec::with_capacity(steps.len());
        for input in &steps {
            let target = (input + self.recurrent.forward(&state)).relu();
            state = state.lerp_tensor(&target, &alpha); // (1 − α)·h + α·target in one op
            states.push(state.shallow_clone());
        }
        self.readout.forward(&Tensor::stack(&states, 1))
    }
}
