//! Attention, as the study's `PureAttention`: √H-scaled embedding + sinusoidal positions
//! (dropout) → one causal multi-head self-attention (dropout on its weights) → readout. No
//! LayerNorm: the study registers one but does not apply it ("Do NOT use LayerNorm here").

use tch::nn::{self, Module};
use tch::Tensor;

use super::blocks::{embedding, encode_positions, readout, CausalSelfAttention};

pub struct Attention {
    embedding: nn::Linear,
    attention: CausalSelfAttention,
    readout: nn::Linear,
    dropout: f64,
}

impl Attention {
    pub fn new(root: &nn::Path, h: i64, dropout: f64) -> Self {
        Attention {
            embedding: embedding(root, h),
            attention: CausalSelfAttention::new(&(root / "attention"), h, dropout),
            readout: readout(root, h),
            dropout,
        }
    }
}

impl super::Model for Attention {
    fn forward_t(&self, x: &Tensor, train: bool) -> Tensor {
        let z = encode_positions(&self.embedding.forward(x), self.dropout, train);
        self.readout.forward(&self.attention.forward(&z, train))
    }
}
