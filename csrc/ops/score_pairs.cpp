#include "score_pairs.h"

#include <ATen/TensorUtils.h>
#include <ATen/core/dispatch/Dispatcher.h>
#include <torch/library.h>

#include <string>

namespace linkexit_fast {
namespace ops {

at::Tensor score_pairs(const at::Tensor& z, const at::Tensor& u, const at::Tensor& v,
                       at::TensorList weights, at::TensorList biases,
                       std::optional<int64_t> block) {
  static auto op = c10::Dispatcher::singleton()
                       .findSchemaOrThrow("linkexit_fast::score_pairs", "")
                       .typed<decltype(score_pairs)>();
  return op.call(z, u, v, weights, biases, block);
}

void check_pair_inputs(at::CheckedFrom c, const at::Tensor& z, const at::Tensor& u,
                       const at::Tensor& v) {
  at::TensorArg z_arg{z, "z", 1}, u_arg{u, "u", 2}, v_arg{v, "v", 3};
  at::checkAllDefined(c, {z_arg, u_arg, v_arg});
  at::checkDim(c, z_arg, 2);
  at::checkDim(c, u_arg, 1);
  at::checkDim(c, v_arg, 1);
  at::checkScalarType(c, z_arg, at::kFloat);
  at::checkScalarType(c, u_arg, at::kLong);
  at::checkSameType(c, u_arg, v_arg);
  at::checkSameNumel(c, u_arg, v_arg);
}

void check_score_pairs_args(const at::Tensor& z, const at::Tensor& u, const at::Tensor& v,
                            at::TensorList weights, at::TensorList biases,
                            std::optional<int64_t> block) {
  at::CheckedFrom c = "score_pairs";
  check_pair_inputs(c, z, u, v);
  at::TensorArg z_arg{z, "z", 1};
  TORCH_CHECK(!block.has_value() || *block > 0, "score_pairs: block must be positive; got ",
              block.value_or(0));
  TORCH_CHECK(!weights.empty() && weights.size() == biases.size(), "score_pairs: needs one bias "
              "per weight and at least one layer; got ", weights.size(), " weights and ",
              biases.size(), " biases");

  int64_t in_features = z.size(1);
  for (size_t l = 0; l < weights.size(); ++l) {
    const std::string w_name = "weights[" + std::to_string(l) + "]";
    const std::string b_name = "biases[" + std::to_string(l) + "]";
    at::TensorArg w_arg{weights[l], w_name.c_str(), 4}, b_arg{biases[l], b_name.c_str(), 5};
    at::checkAllDefined(c, {w_arg, b_arg});
    at::checkSameType(c, z_arg, w_arg);
    at::checkSameType(c, z_arg, b_arg);
    at::checkDim(c, w_arg, 2);
    at::checkDim(c, b_arg, 1);
    TORCH_CHECK(weights[l].size(1) == in_features, "score_pairs: ", w_name, " must be [out, ",
                in_features, "] to follow ", l == 0 ? "z" : "the previous layer", "; got ",
                weights[l].sizes());
    at::checkSize(c, b_arg, {weights[l].size(0)});
    in_features = weights[l].size(0);
  }
  TORCH_CHECK(in_features == 1, "score_pairs: the last layer must map to one logit; got ",
              weights.back().sizes());
}

TORCH_LIBRARY_FRAGMENT(linkexit_fast, m) {
  m.def(
      "score_pairs(Tensor z, Tensor u, Tensor v, Tensor[] weights, Tensor[] biases, "
      "int? block=None) -> Tensor");
}

// The CPU kernel (cpu/score_pairs_kernel.cpp), registered here so that its file need not include
// torch/library.h, several seconds of compile for each file that does.
TORCH_LIBRARY_IMPL(linkexit_fast, CPU, m) {
  m.impl("score_pairs", TORCH_FN(score_pairs_cpu));
}

}  // namespace ops
}  // namespace linkexit_fast
