//! Feedforward, as the study's `FeatureFFNN`: embedding → h + Dropout(ReLU(Linear(h)))
//! (residual) → readout; each step alone.

use tch::nn::{self, Module};
use tch::Tensor;

use super::blocks::{embedding, readout};

pub struct Feedforward {
    embedding: nn::Linear,
    hidden: nn::Linear,
    readout: nn::Linear,
    dropout: f64,
}

impl Feedforward {
    pub fn new(root: &nn::Path, h: i64, dropout: f64) -> Self {
        Feedforward {
            embedding: embedding(root, h),
            hidden: nn::linear(root / "hidden", h, h, Default::default()),
            readout: readout(root, h),
            dropout,
        }
    }
}

impl super::Model for Feedforward {
    fn forward_t(&self, x: &Tensor, train: bool) -> Tensor {
        let e = self.embedding.forward(x);
        let h = &e + self.hidden.forward(&e).relu().dropout(self.dropout, train);
        self.readout.forward(&h)
    }
}
