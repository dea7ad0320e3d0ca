// Walks the op registry: every differentiable op's analytic gradient must match central finite
// differences in f64, and every op name autograd accepts must be exercised by some case.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <set>

#include "core/autograd/node.h"
#include "core/ops.h"
#include "core/ops/registry.h"
#include "core/random/philox.h"

namespace strata {
namespace {

double projected_loss(const OpCase& c, const std::vector<Tensor>& inputs, const Tensor& w) {
  NoGradGuard no_grad;
  return sum(c.fn(inputs) * w).item<double>();
}

class GradCheck : public ::testing::TestWithParam<size_t> {};

TEST_P(GradCheck, MatchesCentralDifferences) {
  const OpCase& c = op_cases()[GetParam()];
  std::vector<Tensor> inputs = c.make_inputs(DType::f64, 20261123);
  Tensor y = c.fn(inputs);
  ASSERT_TRUE(y.requires_grad()) << c.label << ": output does not require grad";
  // A random projection makes every output element count with its own weight.
  Tensor w = randn(y.shape(), RandomKey{99, uint32_t(RngStream::Test), GetParam()}, DType::f64);
  sum(y * w).backward();

  int checked = 0;
  for (size_t i = 0; i < inputs.size(); ++i) {
    Tensor& x = inputs[i];
    if (!x.requires_grad()) continue;
    ASSERT_TRUE(x.is_contiguous());
    const Tensor g = x.grad();
    const std::vector<double> analytic =
        g.defined() ? g.to_vector<double>() : std::vector<double>(size_t(x.numel()), 0.0);
    double* p = x.data<double>();
    for (int64_t j = 0; j < x.numel(); ++j) {
      const double orig = p[j];
      p[j] = orig + c.step;
      const double lp = projected_loss(c, inputs, w);
      p[j] = orig - c.step;
      const double lm = projected_loss(c, inputs, w);
      p[j] = orig;
      const double numeric = (lp - lm) / (2 * c.step);
      EXPECT_NEAR(analytic[j], numeric, c.tolerance * std::max(1.0, std::abs(numeric)))
          << c.label << ": input " << i << " element " << j;
      ++checked;
    }
  }
  EXPECT_GT(checked, 0) << c.label << " has no input that requires grad";
}

std::string case_name(const ::testing::TestParamInfo<size_t>& info) {
  std::string s = op_cases()[info.param].label;
  for (char& ch : s)
    if (!std::isalnum(static_cast<unsigned char>(ch))) ch = '_';
  return s + "_" + std::to_string(info.param);
}

INSTANTIATE_TEST_SUITE_P(Registry, GradCheck, ::testing::Range<size_t>(0, op_cases().size()),
                         case_name);

TEST(OpRegistry, EveryDifferentiableOpHasAGradientCheck) {
  std::set<std::string> seen;
  for (const OpCase& c : op_cases()) {
    auto inputs = c.make_inputs(DType::f64, 1);
    Tensor y = c.fn(inputs);
    std::vector<std::shared_ptr<autograd::Node>> stack{y.grad_fn()};
    std::set<autograd::Node*> visited;
    while (!stack.empty()) {
      auto n = stack.back();
      stack.pop_back();
      if (!n || !visited.insert(n.get()).second) continue;
      seen.insert(n->name());
      for (const auto& e : n->next) stack.push_back(e.node);
    }
  }
  // Families registered from outside core (parallel/'s tensor-parallel ops) are checked where
  // they live, under mpirun (tests/parallel/tp_ops_mpitest.cpp).
  for (const std::string& name : core_op_names())
    EXPECT_TRUE(seen.count(name)) << "op '" << name
                                  << "' has no gradient-check case in the registry";
}

TEST(OpRegistry, FamiliesRegisterFromOutsideCore) {
  register_op_family("registry_test", {"registry_test_op"});
  EXPECT_TRUE(is_registered_op("registry_test_op"));
  EXPECT_EQ(op_family("registry_test"), std::vector<std::string>{"registry_test_op"});
  const auto all = differentiable_op_names();
  EXPECT_NE(std::find(all.begin(), all.end(), "registry_test_op"), all.end());
  EXPECT_NE(std::find(all.begin(), all.end(), "softmax"), all.end());
  EXPECT_FALSE(is_registered_op("registry_test_unknown"));
  EXPECT_TRUE(op_family("no_such_family").empty());
  // A name registered twice, or one that core holds, is a mistake the registry names.
  EXPECT_THROW(register_op_family("registry_test", {"registry_test_op"}), Error);
  EXPECT_THROW(register_op_family("registry_test", {"matmul"}), Error);
}

TEST(OpRegistry, RecordRefusesUnregisteredOps) {
  Tensor x = ones({2}, DType::f64).set_requires_grad(true);
  Tensor y = x * 2.0;
  try {
    autograd::record("not_an_op", {x}, {&y}, {},
                     [](const std::vector<Tensor>& g, const std::vector<Tensor>&,
                        const std::vector<bool>&) -> std::vector<Tensor> { return {g[0]}; });
    FAIL() << "record accepted an unregistered op";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("not_an_op"), std::string::npos);
  }
}

}  // namespace
}  // namespace strata
