//! Baseline: predicts that nothing changes (the next step equals the current one).

use tch::Tensor;

pub struct Baseline;

impl super::Model for Baseline {
    fn forward_t(&self, x: &Tensor, _train: bool) -> Tensor {
        x.shallow_clone()
    }
}
