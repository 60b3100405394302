//! LSTM: LayerNorm(embedding(x)) → one LSTM layer → readout.

use tch::nn::{self, Module, RNN};
use tch::Tensor;

use super::blocks::{embedding, layer_norm, readout};

pub struct Lstm {
    embedding: nn::Linear,
    norm: nn::LayerNorm,
    lstm: nn::LSTM,
    readout: nn::Linear,
}

impl Lstm {
    pub fn new(root: &nn::Path, h: i64) -> Self {
        let cfg = nn::RNNConfig { batch_first: true, ..Default::default() };
        Lstm {
            embedding: embedding(root, h),
            norm: layer_norm(root, "embedding_norm", h),
            lstm: nn::lstm(root / "lstm", h, h, cfg),
            readout: readout(root, h),
        }
    }
}

impl super::Model for Lstm {
    fn forward(&self, x: &Tensor) -> Tensor {
        let e = self.norm.forward(&self.embedding.forward(x));
        let (out, _) = self.lstm.seq(&e);
        self.readout.forward(&out)
    }
}
