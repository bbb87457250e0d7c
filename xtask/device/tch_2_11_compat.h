// Forced into tch 0.26's C++ shim (torch-sys `libtch/*.cpp`, generated for
// libtorch 2.13) by `cargo xtask device-build`, which builds it against the
// libtorch 2.11 of the GPU machine's PyTorch (`-include` through CXXFLAGS).
//
// 2.11 lacks 14 operators that 2.13 added, and its MPS attention takes one
// argument fewer; everything else in the shim compiles unchanged. These
// stand-ins keep the shim's symbols: called, they throw, and tch returns the
// error. zoo calls none of them (they are RNG keys, Lanczos resampling,
// flash attention and MPS attention).
#pragma once

#include <stdexcept>
#include <tuple>

#include <torch/torch.h>

#define ZOO_ABSENT_IN_2_11(name)                                              \
  template <typename... Args>                                                 \
  at::Tensor name(Args&&...) {                                                \
    throw std::runtime_error(#name " is not in libtorch 2.11 (zoo device build)"); \
  }

namespace torch {
ZOO_ABSENT_IN_2_11(_flash_attention_forward_no_dropout_inplace)
ZOO_ABSENT_IN_2_11(_philox_key_fold_in)
ZOO_ABSENT_IN_2_11(_philox_key_split)
ZOO_ABSENT_IN_2_11(_philox_normal)
ZOO_ABSENT_IN_2_11(_philox_normal_)
ZOO_ABSENT_IN_2_11(_philox_normal_out)
ZOO_ABSENT_IN_2_11(_philox_uniform)
ZOO_ABSENT_IN_2_11(_philox_uniform_)
ZOO_ABSENT_IN_2_11(_philox_uniform_out)
ZOO_ABSENT_IN_2_11(_upsample_lanczos2d_aa)
ZOO_ABSENT_IN_2_11(_upsample_lanczos2d_aa_backward)
ZOO_ABSENT_IN_2_11(_upsample_lanczos2d_aa_backward_out)
ZOO_ABSENT_IN_2_11(_upsample_lanczos2d_aa_out)

// A declaration in `torch` hides `at::`'s (2.11, eight arguments) from the
// qualified call the shim makes with nine.
template <typename... Args>
std::tuple<at::Tensor, at::Tensor> _scaled_dot_product_attention_math_for_mps(Args&&...) {
  throw std::runtime_error(
      "_scaled_dot_product_attention_math_for_mps with enable_gqa is not in libtorch 2.11 (zoo device build)");
}
}  // namespace torch

#undef ZOO_ABSENT_IN_2_11
