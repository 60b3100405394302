//! Feedforward: embedding → h + ReLU(Linear(h)) (residual) → readout; each step alone.

use tch::nn::{self, Module};
use tch::Tensor;

use super::blocks::{embedding, readout};

pub struct Feedforward {
    embedding: nn::Linear,
    hidden: nn::Linear,
    readout: nn::Linear,
}

impl Feedforward {
    pub fn new(root: &nn::Path, h: i64) -> Self {
        Feedforward { embedding: embedding(root, h), hidden: nn::linear(root / "hidden", h, h, Default::default()), readout: readout(root, h) }
    }
}

impl super::Model for Feedforward {
    fn forward(&self, x: &Tensor) -> Tensor {
        let e = self.embedding.forward(x);
        let h = &e + self.hidden.forward(&e).relu();
        self.readout.forward(&h)
    }
}
