//! Baseline: predicts that nothing changes (the next step equals the current one).

use tch::Tensor;

pub struct Baseline;

impl super::Model for Baseline {
    fn forward(&self, x: &Tensor) -> Tensor {
        x.shallow_clone()
    }
}
