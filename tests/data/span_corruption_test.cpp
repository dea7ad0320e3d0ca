#include <gtest/gtest.h>

#include <cmath>
#include <memory>
#include <numeric>

#include "core/error.h"
#include "data/loader.h"
#include "data/objectives.h"

namespace strata::data {
namespace {

SpecialIds t5_special(int32_t vocab) {
  SpecialIds s;
  s.pad = 0;
  s.eos = 1;
  s.unk = 2;
  s.num_sentinels = 100;
  s.sentinel_top = vocab - 1;
  return s;
}

TEST(SpanCorruption, LengthFormulaMatchesNanoT5) {
  const auto l = span_corruption_lengths(512, 0.15, 3.0);
  EXPECT_EQ(l.raw, 568);
  EXPECT_EQ(l.inputs, 512);
  EXPECT_EQ(l.targets, 114);
  EXPECT_EQ(l.noise, 85);
  EXPECT_EQ(l.spans, 28);
  // nanoT5's other preset and T5's density-0.5 adjustment.
  const auto l128 = span_corruption_lengths(128, 0.15, 3.0);
  EXPECT_EQ(l128.inputs, 128);
  EXPECT_EQ(l128.raw - l128.noise + l128.spans + 1, 128);
  const auto half = span_corruption_lengths(64, 0.5, 3.0);
  EXPECT_LE(half.targets, half.inputs);
}

// A direct transcription of T5's random_spans_helper with Python rounding, for many lengths.
TEST(SpanCorruption, LengthFormulaIsComputedWithHalfToEven) {
  for (int64_t input = 8; input <= 1200; input += 7) {
    for (double density : {0.1, 0.15, 0.3}) {
      auto f = [&](int64_t t) {
        const double n = std::nearbyint(double(t) * density);
        const double s = std::nearbyint(n / 3.0);
        return std::pair<int64_t, int64_t>(t - int64_t(n) + int64_t(s) + 1, int64_t(n + s + 1));
      };
      int64_t t = input;
      while (f(t + 1).first <= input) ++t;
      const auto l = span_corruption_lengths(input, density, 3.0);
      EXPECT_EQ(l.raw, t) << input << " " << density;
      EXPECT_EQ(l.targets, f(t).second);
    }
  }
  // Half-to-even matters: round(30 * 0.15) = round(4.5) = 4 in Python, 5 with std::round.
  EXPECT_EQ(int64_t(std::nearbyint(30 * 0.15)), 4);
}

TEST(SpanCorruption, ShapesSentinelsAndReconstruction) {
  const int32_t vocab = 32100;
  const auto special = t5_special(vocab);
  SpanCorruption obj({512, 0.15, 3.0}, special);
  ASSERT_EQ(obj.layout().window, 568);
  std::vector<int32_t> raw(568);
  for (uint64_t g = 0; g < 50; ++g) {
    for (size_t i = 0; i < raw.size(); ++i) raw[i] = int32_t(100 + (i * 7 + g * 13) % 30000);
    Batch b;
    b.resize(1, obj.input_len(), obj.target_len(), true);
    obj.build(raw, 568, 42, g, b, 0);
    ASSERT_EQ(b.inputs.size(), 512u);
    ASSERT_EQ(b.targets.size(), 114u);
    EXPECT_EQ(b.inputs.back(), special.eos);
    EXPECT_EQ(b.targets.back(), special.eos);
    EXPECT_EQ(b.targets.front(), special.sentinel(0));  // kept span 0 is replaced by <extra_id_0>
    EXPECT_EQ(b.decoder_inputs[0], special.pad);
    for (int64_t i = 1; i < 114; ++i)
      EXPECT_EQ(b.decoder_inputs[size_t(i)], b.targets[size_t(i - 1)]);
    // Sentinels appear in order <extra_id_0>, <extra_id_1>, ... in both sequences.
    std::vector<int32_t> in_sent, tgt_sent;
    for (int32_t id : b.inputs)
      if (special.is_special(id) && id != special.eos) in_sent.push_back(id);
    for (int32_t id : b.targets)
      if (special.is_special(id) && id != special.eos) tgt_sent.push_back(id);
    ASSERT_EQ(in_sent.size(), 28u);
    ASSERT_EQ(tgt_sent.size(), 28u);
    for (int32_t k = 0; k < 28; ++k) {
      EXPECT_EQ(in_sent[size_t(k)], vocab - 1 - k);
      EXPECT_EQ(tgt_sent[size_t(k)], vocab - 1 - k);
    }
    // Interleave: input keep_k, then sentinel k -> the target's noise_k (after its sentinel k).
    std::vector<int32_t> rebuilt;
    size_t t = 0;
    auto noise_after = [&](int32_t sentinel) {
      while (t < b.targets.size() && b.targets[t] != sentinel) ++t;
      ++t;
      while (t < b.targets.size() && !special.is_special(b.targets[t]))
        rebuilt.push_back(b.targets[t++]);
    };
    for (int32_t id : b.inputs) {
      if (id == special.eos) break;
      if (special.is_special(id))
        noise_after(id);
      else
        rebuilt.push_back(id);
    }
    EXPECT_EQ(rebuilt, raw) << "sample " << g;
  }
}

TEST(SpanCorruption, NoiseFractionAndSpanCountsFollowTheFormula) {
  const auto special = t5_special(32100);
  SpanCorruption obj({512, 0.15, 3.0}, special);
  double mean_first_noise = 0;
  std::vector<double> position_rate(568, 0);
  const int kSamples = 2000;
  for (uint64_t g = 0; g < kSamples; ++g) {
    const auto mask = obj.noise_mask(7, g);
    ASSERT_EQ(mask.size(), 568u);
    EXPECT_EQ(std::accumulate(mask.begin(), mask.end(), 0), 85);
    EXPECT_EQ(mask[0], 0);
    int spans = 0;
    for (size_t i = 0; i < mask.size(); ++i) {
      if (mask[i] && (i == 0 || !mask[i - 1])) ++spans;
      position_rate[i] += mask[i];
    }
    EXPECT_EQ(spans, 28);
    mean_first_noise += double(std::find(mask.begin(), mask.end(), 1) - mask.begin());
  }
  // Noise is spread over the sequence: away from the start every position is noise ~15% of the
  // time (binomial sd at n=2000 is 0.008; allow 5 sd).
  for (size_t i = 50; i < 568; i += 37) EXPECT_NEAR(position_rate[i] / kSamples, 85.0 / 568, 0.045);
  // The first kept span has mean length 483/28 = 17.25 under uniform segmentation.
  EXPECT_NEAR(mean_first_noise / kSamples, 483.0 / 28, 1.0);
}

TEST(SpanCorruption, DeterministicPerSeedAndIndex) {
  SpanCorruption obj({128, 0.15, 3.0}, t5_special(1000));
  EXPECT_EQ(obj.noise_mask(1, 5), obj.noise_mask(1, 5));
  EXPECT_NE(obj.noise_mask(1, 5), obj.noise_mask(1, 6));
  EXPECT_NE(obj.noise_mask(1, 5), obj.noise_mask(2, 5));
}

TEST(SpanCorruption, LengthsItCannotSatisfyAreErrors) {
  EXPECT_THROW(SpanCorruption({1, 0.15, 3.0}, t5_special(1000)), Error);
  EXPECT_THROW(SpanCorruption({3, 0.15, 3.0}, t5_special(1000)), Error);
  auto few = t5_special(1000);
  few.num_sentinels = 10;
  EXPECT_THROW(SpanCorruption({512, 0.15, 3.0}, few), Error);  // 28 spans need 28 sentinels
  EXPECT_NO_THROW(SpanCorruption({32, 0.15, 3.0}, t5_special(1000)));
}

}  // namespace
}  // namespace strata::data
