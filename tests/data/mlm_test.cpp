#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <set>

#include "core/error.h"
#include "data/objectives.h"

namespace strata::data {
namespace {

SpecialIds bert_special() {
  SpecialIds s;
  s.pad = 0;
  s.unk = 1;
  s.cls = 2;
  s.sep = 3;
  s.mask = 4;
  return s;
}

TEST(MaskedLm, RatesWithinStatisticalBoundsAndSpecialsNeverMasked) {
  const int32_t vocab = 1000;
  const auto special = bert_special();
  MaskedLm obj({128, 0.15, 0.8, 0.5}, special, vocab);
  EXPECT_EQ(obj.layout().window, 128);
  EXPECT_EQ(obj.layout().separator, special.sep);
  std::vector<int32_t> raw(128);
  int64_t ordinary = 0, selected = 0, masked = 0, randomised = 0, kept = 0;
  for (uint64_t g = 0; g < 2000; ++g) {
    for (size_t i = 0; i < raw.size(); ++i)
      raw[i] = i % 16 == 15 ? special.sep : int32_t(5 + (i * 31 + g) % 995);
    Batch b;
    b.resize(1, 128, 128, false);
    obj.build(raw, 128, 3, g, b, 0);
    for (size_t i = 0; i < raw.size(); ++i) {
      if (raw[i] == special.sep) {
        EXPECT_EQ(b.inputs[i], special.sep);
        EXPECT_EQ(b.targets[i], kIgnoreIndex);
        continue;
      }
      ++ordinary;
      if (b.targets[i] == kIgnoreIndex) {
        EXPECT_EQ(b.inputs[i], raw[i]);
        continue;
      }
      EXPECT_EQ(b.targets[i], raw[i]);
      ++selected;
      if (b.inputs[i] == special.mask)
        ++masked;
      else if (b.inputs[i] == raw[i])
        ++kept;
      else
        ++randomised;
    }
  }
  // Binomial bounds at 5 standard deviations.
  auto within = [](int64_t hits, int64_t n, double p) {
    const double sd = std::sqrt(double(n) * p * (1 - p));
    return std::abs(double(hits) - double(n) * p) < 5 * sd;
  };
  EXPECT_TRUE(within(selected, ordinary, 0.15)) << selected << "/" << ordinary;
  EXPECT_TRUE(within(masked, selected, 0.8)) << masked << "/" << selected;
  // A random id equal to the original counts as kept: 10% * (1 - 1/vocab) vs 10% + ...
  EXPECT_TRUE(within(randomised, selected, 0.1 * (1 - 1.0 / vocab))) << randomised;
  EXPECT_TRUE(within(kept, selected, 0.1 + 0.1 / vocab)) << kept;
}

TEST(MaskedLm, SelectionIsBernoulliNotAFixedCount) {
  MaskedLm obj({128, 0.15, 0.8, 0.5}, bert_special(), 1000);
  std::vector<int32_t> raw(128, 100);
  std::set<int> counts;
  for (uint64_t g = 0; g < 200; ++g) {
    Batch b;
    b.resize(1, 128, 128, false);
    obj.build(raw, 128, 1, g, b, 0);
    counts.insert(int(std::count_if(b.targets.begin(), b.targets.end(),
                                    [](int32_t t) { return t != kIgnoreIndex; })));
  }
  EXPECT_GT(counts.size(), 5u);
}

TEST(MaskedLm, NeedsAMaskId) {
  SpecialIds s;
  s.sep = 3;
  EXPECT_THROW(MaskedLm({128}, s, 100), Error);
}

TEST(CausalLm, PackedTargetsAreShiftedInputs) {
  SpecialIds s;
  s.eos = 1;
  s.pad = 0;
  CausalLm obj({8, true}, s);
  EXPECT_EQ(obj.layout().window, 9);
  EXPECT_EQ(obj.layout().stride, 8);
  std::vector<int32_t> raw{5, 6, 7, 1, 9, 10, 11, 12, 13};
  Batch b;
  b.resize(1, 8, 8, false);
  obj.build(raw, 9, 0, 0, b, 0);
  EXPECT_EQ(b.inputs, (std::vector<int32_t>{5, 6, 7, 1, 9, 10, 11, 12}));
  EXPECT_EQ(b.targets, (std::vector<int32_t>{6, 7, 1, 9, 10, 11, 12, 13}));
}

}  // namespace
}  // namespace strata::data
