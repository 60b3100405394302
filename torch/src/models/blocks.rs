//! Pieces the architectures share.

use tch::nn::{self, Module};
use tch::{Kind, Tensor};

pub const N_NEURONS_I64: i64 = wormflow_stages::neurons::N_NEURONS as i64;

/// Linear 302 → H (named `embedding`).
pub fn embedding(root: &nn::Path, h: i64) -> nn::Linear {
    nn::linear(root / "embedding", N_NEURONS_I64, h, Default::default())
}

/// Linear H → 302 (named `readout`).
pub fn readout(root: &nn::Path, h: i64) -> nn::Linear {
    nn::linear(root / "readout", h, N_NEURONS_I64, Default::default())
}

pub fn layer_norm(root: &nn::Path, name: &str, h: i64) -> nn::LayerNorm {
    nn::layer_norm(root / name, vec![h], Default::default())
}

/// Sinusoidal positions (Vaswani et al.): (T, H), added to an embedding.
pub fn positions(t: i64, h: i64, like: &Tensor) -> Tensor {
    let pos = Tensor::arange(t, (Kind::Float, like.device())).unsqueeze(1);
    let i = Tensor::arange(h, (Kind::Float, like.device()));
    // frequency 10000^(−2⌊i/2⌋/H): even columns sin, odd columns cos
    let pair = (&i / 2.0).floor() * 2.0;
    let freq = (pair * (-(10000f64.ln()) / h as f64)).exp();
    let angle = pos * freq.unsqueeze(0);
    let even = i.remainder(2.0).eq(0.0);
    angle.sin().where_self(&even.unsqueeze(0), &angle.cos())
}

/// The study's `PositionalEncoding`: the embedding scaled by √H (as in Vaswani et al.), plus
/// sinusoidal positions, then dropout.
pub fn encode_positions(e: &Tensor, dropout: f64, train: bool) -> Tensor {
    let (_, t, h) = e.size3().expect("(B, T, H)");
    (e * (h as f64).sqrt() + positions(t, h, e).unsqueeze(0)).dropout(dropout, train)
}

/// Causal multi-head self-attention with a packed input projection (like PyTorch's
/// `nn.MultiheadAttention`): in_proj (3H × H, bias), out_proj (H × H, bias); dropout on the
/// attention weights while training, as PyTorch's.
#[derive(Debug)]
pub struct CausalSelfAttention {
    in_proj: nn::Linear,
    out_proj: nn::Linear,
    heads: i64,
    dropout: f64,
}

impl CausalSelfAttention {
    pub fn new(root: &nn::Path, h: i64, dropout: f64) -> Self {
        CausalSelfAttention {
            in_proj: nn::linear(root / "in_proj", h, 3 * h, Default::default()),
            out_proj: nn::linear(root / "out_proj", h, h, Default::default()),
            heads: super::heads_for(h),
            dropout,
        }
    }

    pub fn forward(&self, x: &Tensor, train: bool) -> Tensor {
        let (b, t, h) = x.size3().expect("(B, T, H)");
        let d = h / self.heads;
        let qkv = self.in_proj.forward(x).view([b, t, 3, self.heads, d]).permute([2, 0, 3, 1, 4]);
        let (q, k, v) = (qkv.get(0), qkv.get(1), qkv.get(2));
        let p = if train { self.dropout } else { 0.0 };
        let y = Tensor::scaled_dot_product_attention(
            &q,
            &k,
            &v,
            None::<Tensor>,
            p,
            true,
            None::<f64>,
            false,
        );
        self.out_proj.forward(&y.transpose(1, 2).contiguous().view([b, t, h]))
    }
}
