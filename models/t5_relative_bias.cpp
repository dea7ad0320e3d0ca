#include "models/t5_relative_bias.h"

#include <algorithm>
#include <cstdlib>

#include "core/error.h"
#include "core/ops.h"

namespace strata::models {

namespace {

// Just enough of an unsigned big integer to compare products of small powers exactly
// (128^16 * 16^15 already exceeds 128 bits).
class BigUint {
 public:
  explicit BigUint(uint32_t v) : limbs_{v} {}
  void mul(uint32_t m) {
    uint64_t carry = 0;
    for (auto& l : limbs_) {
      const uint64_t p = uint64_t(l) * m + carry;
      l = uint32_t(p);
      carry = p >> 32;
    }
    if (carry != 0) limbs_.push_back(uint32_t(carry));
  }
  void mul_pow(uint32_t base, int64_t exp) {
    for (int64_t i = 0; i < exp; ++i) mul(base);
  }
  friend bool operator>=(const BigUint& x, const BigUint& y) {
    auto trimmed = [](const std::vector<uint32_t>& v) {
      size_t n = v.size();
      while (n > 1 && v[n - 1] == 0) --n;
      return n;
    };
    const size_t nx = trimmed(x.limbs_), ny = trimmed(y.limbs_);
    if (nx != ny) return nx > ny;
    for (size_t i = nx; i-- > 0;)
      if (x.limbs_[i] != y.limbs_[i]) return x.limbs_[i] > y.limbs_[i];
    return true;
  }

 private:
  std::vector<uint32_t> limbs_;
};

void check_bucket_args(int64_t n, int64_t max_distance, bool bidirectional) {
  const int64_t max_exact = n / 2;
  STRATA_CHECK(max_exact >= 1 && max_distance > max_exact && max_distance < (int64_t(1) << 31),
               "T5 relative bias: ", bidirectional ? "bidirectional " : "causal ",
               "buckets need num_buckets", bidirectional ? " / 2" : "", " = ", n,
               " >= 2 and max_exact = ", max_exact, " < max_distance = ", max_distance);
}

// Bucket of the magnitude a >= 0 among n buckets. floor(x) >= k with
// x = (n - e) ln(a / e) / ln(m / e) (e = max_exact, m = max_distance) is equivalent, for a >= e
// and m > e, to a^(n-e) e^k >= m^k e^(n-e): compared exactly for each k.
int64_t magnitude_bucket(int64_t a, int64_t n, int64_t max_distance) {
  const int64_t e = n / 2;
  if (a < e) return a;
  a = std::min(a, max_distance);  // every a >= max_distance lands in the last bucket
  int64_t k = 0;
  while (k + 1 <= n - e - 1) {
    const int64_t next = k + 1;
    BigUint lhs(1), rhs(1);
    lhs.mul_pow(uint32_t(a), n - e);
    lhs.mul_pow(uint32_t(e), next);
    rhs.mul_pow(uint32_t(max_distance), next);
    rhs.mul_pow(uint32_t(e), n - e);
    if (!(lhs >= rhs)) break;
    k = next;
  }
  return e + k;
}

}  // namespace

int64_t t5_relative_bucket(int64_t rel, bool bidirectional, int64_t num_buckets,
                           int64_t max_distance) {
  const int64_t n = bidirectional ? num_buckets / 2 : num_buckets;
  check_bucket_args(n, max_distance, bidirectional);
  if (bidirectional) return (rel > 0 ? n : 0) + magnitude_bucket(std::abs(rel), n, max_distance);
  return magnitude_bucket(std::max<int64_t>(-rel, 0), n, max_distance);
}

namespace {

Sharding head_split(int64_t num_buckets, int64_t n_heads, const parallel::Communicator* tp) {
  STRATA_CHECK(n_heads > 0, "T5RelativeBias: n_heads must be positive, got ", n_heads);
  if (tp == nullptr || tp->size() == 1) return Sharding::replicated({num_buckets, n_heads});
  STRATA_CHECK(n_heads % tp->size() == 0, "T5RelativeBias: n_heads ", n_heads,
               " is not divisible by the tensor-parallel size ", tp->size());
  return Sharding::split({num_buckets, n_heads}, 1, tp->rank(), tp->size(), "T5RelativeBias");
}

}  // namespace

T5RelativeBias::T5RelativeBias(int64_t num_buckets, int64_t max_distance, int64_t n_heads,
                               bool bidirectional, Init init, parallel::Communicator* tp)
    : Module("T5RelativeBias"),
      num_buckets_(num_buckets),
      max_distance_(max_distance),
      n_heads_(n_heads),
      bidirectional_(bidirectional),
      weight_(register_sharded_parameter("weight", head_split(num_buckets, n_heads, tp), init)) {
  STRATA_CHECK(!bidirectional || num_buckets % 2 == 0,
               "T5RelativeBias: bidirectional buckets must be even, got ", num_buckets);
  const int64_t n = bidirectional ? num_buckets / 2 : num_buckets;
  check_bucket_args(n, max_distance, bidirectional);
  by_magnitude_.resize(size_t(max_distance + 1));
  for (int64_t a = 0; a <= max_distance; ++a)
    by_magnitude_[size_t(a)] = magnitude_bucket(a, n, max_distance);
}

Tensor T5RelativeBias::buckets(int64_t q_len, int64_t k_len, int64_t q_offset) const {
  STRATA_CHECK(q_len > 0 && k_len > 0 && q_offset >= 0, "T5RelativeBias: bad lengths q ", q_len,
               ", k ", k_len, ", offset ", q_offset);
  const int64_t half = num_buckets_ / 2;
  std::vector<int64_t> ids(size_t(q_len * k_len));
  for (int64_t i = 0; i < q_len; ++i)
    for (int64_t j = 0; j < k_len; ++j) {
      const int64_t rel = j - (q_offset + i);
      int64_t b;
      if (bidirectional_)
        b = (rel > 0 ? half : 0) + by_magnitude_[size_t(std::min(std::abs(rel), max_distance_))];
      else
        b = by_magnitude_[size_t(std::min(std::max<int64_t>(-rel, 0), max_distance_))];
      ids[size_t(i * k_len + j)] = b;
    }
  return from_vector<int64_t>(ids, {q_len, k_len});
}

Tensor T5RelativeBias::forward(int64_t q_len, int64_t k_len, int64_t q_offset) const {
  // [Lq, Lk, H] -> [1, H, Lq, Lk]; contiguous so the attention kernel reads score rows directly.
  return embedding(weight_, buckets(q_len, k_len, q_offset))
      .permute({2, 0, 1})
      .unsqueeze(0)
      .contiguous();
}

}  // namespace strata::models
