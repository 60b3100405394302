//! Linear, as the study's `LinearRegression`: embedding → readout, no nonlinearity. The
//! study's width is fixed at 302 (see `model_size::LINEAR_WIDTH`); another H makes it a
//! rank-H linear map.

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
    fn forward_t(&self, x: &Tensor, _train: bool) -> Tensor {
        self.readout.forward(&self.embedding.forward(x))
    }
}
