//! Linear: embedding → readout, no nonlinearity (a rank-H linear map of the current step).

use tch::nn::{self, Module};
use tch::Tensor;

use super::blocks::{embedding, readout};

pub struct Linear {
    embedding: nn::Linear,
    readout: nn::Linear,
}

impl Linear {
    pub fn new(root: &nn::Path, h: i64) -> Self {
        Linear { embedding: embedding(root, h), readout: readout(root, h) }
    }
}

impl super::Model for Linear {
    fn forward(&self, x: &Tensor) -> Tensor {
        self.readout.forward(&self.embedding.forward(x))
    }
}
