//! Transformer: embedding + sinusoidal positions → one pre-norm causal encoder layer
//! (x + Attention(LN(x)), then x + FF(LN(x)) with feed-forward width H) → readout.

use tch::nn::{self, Module};
use tch::Tensor;

use super::blocks::{embedding, layer_norm, positions, readout, CausalSelfAttention};

pub struct Transformer {
    embedding: nn::Linear,
    norm1: nn::LayerNorm,
    attention: CausalSelfAttention,
    norm2: nn::LayerNorm,
    ff1: nn::Linear,
    ff2: nn::Linear,
    readout: nn::Linear,
}

impl Transformer {
    pub fn new(root: &nn::Path, h: i64) -> Self {
        let layer = root / "encoder";
        Transformer {
            embedding: embedding(root, h),
            norm1: layer_norm(&layer, "norm1", h),
            attention: CausalSelfAttention::new(&(&layer / "attention"), h),
            norm2: layer_norm(&layer, "norm2", h),
            ff1: nn::linear(&layer / "ff1", h, h, Default::default()),
            ff2: nn::linear(&layer / "ff2", h, h, Default::default()),
            readout: readout(root, h),
        }
    }
}

impl super::Model for Transformer {
    fn forward(&self, x: &Tensor) -> Tensor {
        let e = self.embedding.forward(x);
        let (_, t, h) = e.size3().expect("(B, T, H)");
        let z = &e + positions(t, h, &e).unsqueeze(0);
        let z = &z + self.attention.forward(&self.norm1.forward(&z));
        let z = &z + self.ff2.forward(&self.ff1.forward(&self.norm2.forward(&z)).relu());
        self.readout.forward(&z)
    }
}
