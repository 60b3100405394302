//! `precision` of a train node: how its matmuls compute.
//!
//! - `fp32` (default, as the study): everything in float32.
//! - `tf32`: float32 tensors, but CUDA matmuls and convolutions in TF32 (10-bit mantissa
//!   products, float32 sums), as PyTorch's `allow_tf32`; a CUDA mode only.
//! - `bf16`: every matmul (linear maps, recurrent and attention products) takes bfloat16
//!   operands and gives bfloat16 results, from float32 master weights; everything else —
//!   norms, activations, recurrent states, softmax, the loss, AdamW — stays float32.
//!   Like PyTorch's autocast for the matmuls; where autocast would run an elementwise op
//!   on a bfloat16 result in bfloat16, this casts back to float32 first.

use anyhow::{bail, Result};
use tch::{Device, Kind};

pub use wormflow_stages::torch_stages::Precision;

extern "C" {
    fn wormflow_set_tf32(on: bool);
    fn wormflow_tf32_cublas() -> bool;
}

/// Set the process's TF32 switch for a node of `precision` on `device` (the helper serves
/// node after node, so it is set each time); the dtype its matmuls compute in.
pub fn apply(precision: Precision, device: Device) -> Result<Kind> {
    if precision == Precision::Tf32 && !device.is_cuda() {
        bail!("precision = \"tf32\" is a CUDA matmul mode and this node runs on the CPU; use \"fp32\" (the study's) or \"bf16\"");
    }
    // SAFETY: two setters of libtorch's global context, no pointers involved.
    unsafe { wormflow_set_tf32(precision == Precision::Tf32) };
    Ok(match precision {
        Precision::Bf16 => Kind::BFloat16,
        Precision::Fp32 | Precision::Tf32 => Kind::Float,
    })
}

/// Whether TF32 matmuls are on in this process (for tests and provenance).
pub fn tf32_enabled() -> bool {
    // SAFETY: a getter of libtorch's global context.
    unsafe { wormflow_tf32_cublas() }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_shim_sets_libtorchs_tf32_switch_and_cpu_refuses_tf32() {
        assert!(apply(Precision::Tf32, Device::Cpu).is_err());
        // The switch itself is process-wide and settable on any build.
        unsafe { wormflow_set_tf32(true) };
        assert!(tf32_enabled());
        assert_eq!(apply(Precision::Bf16, Device::Cpu).unwrap(), Kind::BFloat16);
        assert!(!tf32_enabled());
    }
}
