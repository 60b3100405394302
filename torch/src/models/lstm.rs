//! LSTM, as the study's `NetworkLSTM`: LayerNorm(embedding(x)) → one LSTM layer → readout,
//! with the study's initialisation of the LSTM (`init_weights`): input weights Xavier-uniform
//! with gain 1.5, recurrent weights orthogonal, biases zero.

use tch::nn::{self, Init, Module, RNN};
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
        // Xavier bound gain·√(6 / (fan_in + fan_out)) for weight_ih (4H × H): fan_in H, fan_out 4H.
        let bound = 1.5 * (6.0 / (5 * h) as f64).sqrt();
        let cfg = nn::RNNConfig {
            batch_first: true,
            w_ih_init: Init::Uniform { lo: -bound, up: bound },
            w_hh_init: Init::Orthogonal { gain: 1.0 },
            b_ih_init: Some(Init::Const(0.0)),
            b_hh_init: Some(Init::Const(0.0)),
            ..Default::default()
        };
        let lstm = nn::lstm(root / "lstm", h, h, cfg);
        Lstm {
            embedding: embedding(root, h),
            norm: layer_norm(root, "embedding_norm", h),
            lstm,
            readout: readout(root, h),
        }
    }
}

impl super::Model for Lstm {
    fn forward_t(&self, x: &Tensor, _train: bool) -> Tensor {
        let e = self.norm.forward(&self.embedding.forward(x));
        let (out, _) = self.lstm.seq(&e);
        self.readout.forward(&out)
    }
}
