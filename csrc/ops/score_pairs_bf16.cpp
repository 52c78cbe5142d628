#include "score_pairs_bf16.h"
#include "score_pairs.h"

#include <ATen/TensorUtils.h>
#include <ATen/core/dispatch/Dispatcher.h>
#include <torch/library.h>

#include <string>

namespace linkexit_fast {
namespace ops {

std::tuple<at::Tensor, at::Tensor> score_pairs_bf16(
    const at::Tensor& z, const at::Tensor& u, const at::Tensor& v, at::TensorList hidden,
    at::TensorList biases, const at::Tensor& last, at::TensorList bound_vectors,
    double bound_scale, double bound_const, c10::string_view isa) {
  static auto op = c10::Dispatcher::singleton()
                       .findSchemaOrThrow("linkexit_fast::score_pairs_bf16", "")
                       .typed<decltype(score_pairs_bf16)>();
  return op.call(z, u, v, hidden, biases, last, bound_vectors, bound_scale, bound_const, isa);
}

void check_score_pairs_bf16_args(const at::Tensor& z, const at::Tensor& u, const at::Tensor& v,
                                 at::TensorList hidden, at::TensorList biases,
                                 const at::Tensor& last, at::TensorList bound_vectors) {
  at::CheckedFrom c = "score_pairs_bf16";
  check_pair_inputs(c, z, u, v);
  at::TensorArg last_arg{last, "last", 6};
  at::checkAllDefined(c, {last_arg});
  const size_t L = hidden.size() + 1;
  TORCH_CHECK(biases.size() == L && bound_vectors.size() == L, "score_pairs_bf16: needs one bias "
              "and one bound vector per layer (", L, " layers); got ", biases.size(), " biases and ",
              bound_vectors.size(), " bound vectors");
  int64_t width = z.size(1), terms = -1;
  for (size_t l = 0; l < L; ++l) {
    const std::string b_name = "biases[" + std::to_string(l) + "]";
    const std::string m_name = "bound_vectors[" + std::to_string(l) + "]";
    at::TensorArg b_arg{biases[l], b_name.c_str(), 5}, m_arg{bound_vectors[l], m_name.c_str(), 7};
    at::checkAllDefined(c, {b_arg, m_arg});
    at::checkScalarType(c, b_arg, at::kFloat);
    at::checkScalarType(c, m_arg, at::kFloat);
    at::checkSize(c, m_arg, {width});
    if (l + 1 == L) {
      at::checkScalarType(c, last_arg, at::kFloat);
      TORCH_CHECK(last.dim() == 2 && last.size(0) == 1 && last.size(1) == width,
                  "score_pairs_bf16: last must be [1, ", width, "]; got ", last.sizes());
      at::checkSize(c, b_arg, {1});
      break;
    }
    const std::string w_name = "hidden[" + std::to_string(l) + "]";
    at::TensorArg w_arg{hidden[l], w_name.c_str(), 4};
    at::checkDefined(c, w_arg);
    at::checkScalarType(c, w_arg, at::kBFloat16);
    TORCH_CHECK(hidden[l].dim() == 3 && (hidden[l].size(0) == 1 || hidden[l].size(0) == 2) &&
                    hidden[l].size(2) == width,
                "score_pairs_bf16: ", w_name, " must be [1 or 2, out, ", width, "]; got ",
                hidden[l].sizes());
    TORCH_CHECK(terms < 0 || hidden[l].size(0) == terms, "score_pairs_bf16: every hidden layer "
                "needs the same number of weight parts; ", w_name, " has ", hidden[l].size(0));
    terms = hidden[l].size(0);
    width = hidden[l].size(1);
    at::checkSize(c, b_arg, {width});
  }
}

TORCH_LIBRARY_FRAGMENT(linkexit_fast, m) {
  m.def(
      "score_pairs_bf16(Tensor z, Tensor u, Tensor v, Tensor[] hidden, Tensor[] biases, "
      "Tensor last, Tensor[] bound_vectors, float bound_scale, float bound_const, "
      "str isa=\"auto\") -> (Tensor, Tensor)");
  m.def("bf16_cpu_isa() -> str", [] { return bf16_cpu_isa(); });
}

// The CPU kernel (cpu/score_pairs_bf16_kernel.cpp), registered here so that its file need not include
// torch/library.h, several seconds of compile for each file that does.
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))  // as the kernel's file
TORCH_LIBRARY_IMPL(linkexit_fast, CPU, m) {
  m.impl("score_pairs_bf16", TORCH_FN(score_pairs_bf16_cpu));
}
#endif

}  // namespace ops
}  // namespace linkexit_fast
