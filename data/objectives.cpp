#include "data/objectives.h"

#include <algorithm>
#include <cmath>
#include <numeric>

#include "core/error.h"
#include "core/random/philox.h"

namespace strata::data {

void Batch::resize(int64_t r, int64_t in_len, int64_t tgt_len, bool decoder) {
  rows = r;
  input_len = in_len;
  target_len = tgt_len;
  inputs.assign(size_t(r * in_len), 0);
  targets.assign(size_t(r * tgt_len), kIgnoreIndex);
  decoder_inputs.assign(decoder ? size_t(r * tgt_len) : 0, 0);
  global_index.assign(size_t(r), 0);
  sample.assign(size_t(r), 0);
}

namespace {

// Python's round(): half to even, which std::nearbyint gives under the default rounding mode.
int64_t py_round(double x) {
  return int64_t(std::nearbyint(x));
}

// Uniform integer in [0, n) from 32 random bits (multiply-shift; the bias is below n / 2^32).
uint32_t below(uint32_t bits, uint64_t n) {
  return uint32_t((uint64_t(bits) * n) >> 32);
}

// T5's _random_segmentation: n items into s non-empty segments, all C(n-1, s-1) cuts equally
// likely. A partial Fisher-Yates picks the s-1 cut gaps out of the n-1; element indices
// [base, base + s - 1) of `rng` drive it.
void random_segmentation(int64_t n, int64_t s, const Philox& rng, uint64_t base,
                         std::vector<int64_t>& gaps, std::vector<uint8_t>& cut,
                         std::vector<int64_t>& lengths) {
  gaps.resize(size_t(n - 1));
  std::iota(gaps.begin(), gaps.end(), int64_t(0));
  cut.assign(size_t(n), 0);
  for (int64_t k = 0; k < s - 1; ++k) {
    const int64_t j = k + below(rng.bits(base + uint64_t(k)), uint64_t(n - 1 - k));
    std::swap(gaps[size_t(k)], gaps[size_t(j)]);
    cut[size_t(gaps[size_t(k)] + 1)] = 1;  // item gap+1 starts a new segment
  }
  lengths.assign(size_t(s), 0);
  int64_t seg = 0;
  for (int64_t i = 0; i < n; ++i) {
    seg += cut[size_t(i)];
    ++lengths[size_t(seg)];
  }
}

}  // namespace

// --- span corruption ---------------------------------------------------------------------------

SpanLengths span_corruption_lengths(int64_t input_len, double density, double mean_span) {
  STRATA_CHECK(input_len > 1, "span corruption: input length ", input_len, ", expected > 1");
  STRATA_CHECK(density > 0 && density < 1, "span corruption: noise density ", density,
               ", expected in (0, 1)");
  STRATA_CHECK(mean_span >= 1, "span corruption: mean span length ", mean_span, ", expected >= 1");
  auto lengths = [&](int64_t t) {
    const int64_t noise = py_round(double(t) * density);
    const int64_t spans = py_round(double(noise) / mean_span);
    return std::pair{t - noise + spans + 1, noise + spans + 1};
  };
  int64_t t = input_len;
  while (lengths(t + 1).first <= input_len) ++t;
  auto [inputs, targets] = lengths(t);
  // T5's own adjustment so that at density 0.5 the targets are no longer than the inputs.
  if (density == 0.5 && targets > inputs) {
    --t;
    --targets;
  }
  SpanLengths l;
  l.raw = t;
  l.inputs = inputs;
  l.targets = targets;
  l.noise = std::clamp<int64_t>(py_round(double(t) * density), 1, t - 1);
  l.spans = std::max<int64_t>(1, py_round(double(l.noise) / mean_span));
  return l;
}

SpanCorruption::SpanCorruption(SpanCorruptionOptions o, const SpecialIds& special)
    : options_(o), special_(special) {
  lengths_ = span_corruption_lengths(o.input_len, o.noise_density, o.mean_span);
  const auto& l = lengths_;
  // The per-sample mask clamps and floors where the length formula does not; at tiny lengths the
  // two disagree and the batch would not have the promised shape, so refuse such lengths.
  STRATA_CHECK(l.raw - l.noise >= l.spans && l.raw - l.noise + l.spans + 1 == l.inputs &&
                   l.noise + l.spans + 1 == l.targets,
               "span corruption: input length ", o.input_len, " cannot be satisfied at noise ",
               o.noise_density, " and mean span ", o.mean_span, " (raw ", l.raw, " tokens give ",
               l.noise, " noise tokens in ", l.spans, " spans); use a longer input");
  STRATA_CHECK(special.num_sentinels >= l.spans, "span corruption: ", l.spans,
               " spans per sample need as many sentinels, the tokenizer has ",
               special.num_sentinels, " (train it with --style t5)");
  STRATA_CHECK(special.eos >= 0, "span corruption: the tokenizer has no EOS id (use --style t5)");
}

SampleLayout SpanCorruption::layout() const {
  return {lengths_.raw, lengths_.raw, Packing::Packed, special_.eos, special_.pad};
}

std::vector<uint8_t> SpanCorruption::noise_mask(uint64_t seed, uint64_t global_index) const {
  const Philox rng(seed, RngStream::Objective, global_index);
  const int64_t n = lengths_.raw, noise = lengths_.noise, spans = lengths_.spans;
  std::vector<int64_t> gaps, noise_len, keep_len;
  std::vector<uint8_t> cut;
  random_segmentation(noise, spans, rng, 0, gaps, cut, noise_len);
  random_segmentation(n - noise, spans, rng, uint64_t(1) << 32, gaps, cut, keep_len);
  std::vector<uint8_t> mask(size_t(n), 0);
  int64_t pos = 0;
  for (int64_t s = 0; s < spans; ++s) {
    pos += keep_len[size_t(s)];
    std::fill_n(mask.begin() + pos, noise_len[size_t(s)], uint8_t(1));
    pos += noise_len[size_t(s)];
  }
  return mask;
}

void SpanCorruption::build(std::span<const int32_t> raw, int64_t, uint64_t seed,
                           uint64_t global_index, Batch& b, int64_t row) const {
  const auto mask = noise_mask(seed, global_index);
  int32_t* in = b.inputs.data() + row * b.input_len;
  int32_t* tgt = b.targets.data() + row * b.target_len;
  int32_t* dec = b.decoder_inputs.data() + row * b.target_len;
  // Each noise span becomes one sentinel in the inputs; each kept span one sentinel in the
  // targets; the k-th span pair shares sentinel k (counting down from <extra_id_0>).
  int64_t ni = 0, nt = 0, noise_spans = 0, keep_spans = 0;
  for (int64_t i = 0; i < lengths_.raw; ++i) {
    const bool noise = mask[size_t(i)] != 0;
    const bool starts = i == 0 || mask[size_t(i - 1)] != mask[size_t(i)];
    if (noise) {
      if (starts) in[ni++] = special_.sentinel(int32_t(noise_spans++));
      tgt[nt++] = raw[size_t(i)];
    } else {
      if (starts) tgt[nt++] = special_.sentinel(int32_t(keep_spans++));
      in[ni++] = raw[size_t(i)];
    }
  }
  in[ni++] = special_.eos;
  tgt[nt++] = special_.eos;
  STRATA_CHECK(ni == b.input_len && nt == b.target_len, "span corruption: built ", ni, "/", nt,
               " tokens, expected ", b.input_len, "/", b.target_len);
  // The decoder is fed the targets shifted right with pad as the start token, as in T5.
  dec[0] = special_.pad >= 0 ? special_.pad : 0;
  std::copy(tgt, tgt + nt - 1, dec + 1);
}

// --- MLM ---------------------------------------------------------------------------------------

MaskedLm::MaskedLm(MaskedLmOptions o, const SpecialIds& special, int32_t vocab)
    : options_(o), special_(special), vocab_(vocab) {
  STRATA_CHECK(o.seq_len > 0, "mlm: sequence length ", o.seq_len, ", expected > 0");
  STRATA_CHECK(o.select >= 0 && o.select <= 1 && o.mask >= 0 && o.mask <= 1 && o.random >= 0 &&
                   o.random <= 1,
               "mlm: probabilities must lie in [0, 1]");
  STRATA_CHECK(special.mask >= 0, "mlm: the tokenizer has no [MASK] id (use --style bert)");
  STRATA_CHECK(special.separator() >= 0, "mlm: the tokenizer has no [SEP] id");
  STRATA_CHECK(vocab > 0, "mlm: vocabulary size ", vocab);
}

SampleLayout MaskedLm::layout() const {
  return {options_.seq_len, options_.seq_len, Packing::Packed,
          special_.sep >= 0 ? special_.sep : special_.separator(), special_.pad};
}

void MaskedLm::build(std::span<const int32_t> raw, int64_t, uint64_t seed, uint64_t global_index,
                     Batch& b, int64_t row) const {
  const Philox rng(seed, RngStream::Objective, global_index);
  int32_t* in = b.inputs.data() + row * b.input_len;
  int32_t* tgt = b.targets.data() + row * b.target_len;
  const auto p_select = uint64_t(options_.select * 0x1p32);
  const auto p_mask = uint64_t(options_.mask * 0x1p32);
  const auto p_random = uint64_t(options_.random * 0x1p32);
  for (int64_t i = 0; i < options_.seq_len; ++i) {
    const int32_t id = raw[size_t(i)];
    in[i] = id;
    tgt[i] = kIgnoreIndex;
    if (special_.is_special(id)) continue;
    // One Philox block per token: select, [MASK]?, random?, which random id.
    const auto w = rng.block(uint64_t(i));
    if (w[0] >= p_select) continue;
    tgt[i] = id;
    if (w[1] < p_mask)
      in[i] = special_.mask;
    else if (w[2] < p_random)
      in[i] = int32_t(below(w[3], uint64_t(vocab_)));
  }
}

// --- causal LM ---------------------------------------------------------------------------------

CausalLm::CausalLm(CausalLmOptions o, const SpecialIds& special)
    : options_(o), separator_(special.separator()), pad_(special.pad >= 0 ? special.pad : 0) {
  STRATA_CHECK(o.seq_len > 0, "causal lm: sequence length ", o.seq_len, ", expected > 0");
}

SampleLayout CausalLm::layout() const {
  // One token overlaps between windows: the last target of a sample is the next one's first input.
  return {options_.seq_len + 1, options_.seq_len,
          options_.packed ? Packing::Packed : Packing::Documents, separator_, pad_};
}

void CausalLm::build(std::span<const int32_t> raw, int64_t valid, uint64_t, uint64_t, Batch& b,
                     int64_t row) const {
  int32_t* in = b.inputs.data() + row * b.input_len;
  int32_t* tgt = b.targets.data() + row * b.target_len;
  for (int64_t i = 0; i < options_.seq_len; ++i) {
    in[i] = raw[size_t(i)];
    tgt[i] = i + 1 < valid ? raw[size_t(i) + 1] : kIgnoreIndex;
  }
}

// --- byte LM -----------------------------------------------------------------------------------

ByteLm::ByteLm(ByteLmOptions o, const Tokenizer& tokenizer) : options_(o) {
  STRATA_CHECK(tokenizer.kind() == "bytes", "byte lm: needs the byte tokenizer, got a ",
               tokenizer.kind(), " tokenizer (", tokenizer.fingerprint(), ")");
  STRATA_CHECK(o.seq_len > 0, "byte lm: sequence length ", o.seq_len, ", expected > 0");
  STRATA_CHECK(o.separator >= -1 && o.separator < 256, "byte lm: separator ", o.separator,
               ", expected a byte 0..255 or -1 for none");
}

SampleLayout ByteLm::layout() const {
  return {options_.seq_len + 1, options_.seq_len, Packing::Packed, options_.separator, 0};
}

void ByteLm::build(std::span<const int32_t> raw, int64_t, uint64_t, uint64_t, Batch& b,
                   int64_t row) const {
  int32_t* in = b.inputs.data() + row * b.input_len;
  int32_t* tgt = b.targets.data() + row * b.target_len;
  for (int64_t i = 0; i < options_.seq_len; ++i) {
    in[i] = raw[size_t(i)];
    tgt[i] = raw[size_t(i) + 1];
  }
}

}  // namespace strata::data
