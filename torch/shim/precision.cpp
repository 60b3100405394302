// What tch does not wrap: libtorch's switch for TF32 matmuls (cuBLAS) and convolutions
// (cuDNN), global to the process (PyTorch's torch.backends.cuda.matmul.allow_tf32 and
// torch.backends.cudnn.allow_tf32). Two C functions over at::globalContext(), called from
// torch/src/precision.rs.
#include <ATen/Context.h>

extern "C" void wormflow_set_tf32(bool on) {
  at::globalContext().setAllowTF32CuBLAS(on);
  at::globalContext().setAllowTF32CuDNN(on);
}

extern "C" bool wormflow_tf32_cublas() {
  return at::globalContext().allowTF32CuBLAS();
}
