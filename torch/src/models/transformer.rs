//! Transformer, as the study's `NeuralTransformer`: √H-scaled embedding + sinusoidal
//! positions (dropout) → one pre-norm causal encoder layer (PyTorch's
//! `TransformerEncoderLayer(norm_first = true)`, ReLU, feed-forward width H, dropout on the
//! attention weights, after attention, inside and after the feed-forward) → readout.

use tch::nn::{self, Module};
use tch::Tensor;

use super::blocks::{embedding, encode_positions, layer_norm, readout, CausalSelfAttention};

pub struct Transformer {
    embedding: nn::Linear,
    norm1: nn::LayerNorm,
    attention: CausalSelfAttention,
    norm2: nn::LayerNorm,
    ff1: nn::Linear,
    ff2: nn::Linear,
    readout: nn::Linear,
    dropout: f64,
}

impl Transformer {
    pub fn new(root: &nn::Path, h: i64, dropout: f64) -> Self {
        let layer = root / "encoder";
        Transformer {
            embedding: embedding(root, h),
            norm1: layer_norm(&layer, "norm1", h),
            attention: CausalSelfAttention::new(&(&layer / "attention"), h, dropout),
            norm2: layer_norm(&layer, "norm2", h),
            ff1: nn::linear(&layer / "ff1", h, h, Default::default()),
            ff2: nn::linear(&layer / "ff2", h, h, Default::default()),
            readout: readout(root, h),
            dropout,
        }
    }
}

impl super::Model for Transformer {
    fn forward_t(&self, x: &Tensor, train: bool) -> Tensor {
        let p = self.dropout;
        let z = encode_positions(&self.embedding.forward(x), p, train);
        let z = &z + self.attention.forward(&self.norm1.forward(&z), train).dropout(p, train);
        let inner = self.ff1.forward(&self.norm2.forward(&z)).relu().dropout(p, train);
        let z = &z + self.ff2.forward(&inner).dropout(p, train);
        self.readout.forward(&z)
    }
}
