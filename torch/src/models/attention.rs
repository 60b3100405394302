//! Attention: LayerNorm(embedding(x) + sinusoidal positions) → one causal multi-head
//! self-attention → readout.

use tch::nn::{self, Module};
use tch::Tensor;

use super::blocks::{embedding, layer_norm, positions, readout, CausalSelfAttention};

pub struct Attention {
    embedding: nn::Linear,
    norm: nn::LayerNorm,
    attention: CausalSelfAttention,
    readout: nn::Linear,
}

impl Attention {
    pub fn new(root: &nn::Path, h: i64) -> Self {
        Attention {
            embedding: embedding(root, h),
            norm: layer_norm(root, "embedding_norm", h),
            attention: CausalSelfAttention::new(&(root / "attention"), h),
            readout: readout(root, h),
        }
    }
}

impl super::Model for Attention {
    fn forward(&self, x: &Tensor) -> Tensor {
        let e = self.embedding.forward(x);
        let (_, t, h) = e.size3().expect("(B, T, H)");
        let z = self.norm.forward(&(&e + positions(t, h, &e).unsqueeze(0)));
        self.readout.forward(&self.attention.forward(&z))
    }
}
