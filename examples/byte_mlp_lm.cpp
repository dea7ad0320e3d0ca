// A byte-level language model built from core alone: the previous 32 bytes, embedded and
// concatenated, predict the next byte through a two-layer GELU MLP trained with AdamW. It shows
// core's tensor, autograd, fused kernels and counter-based randomness doing real work end to end.
//   strata_byte_mlp_lm CORPUS_DIR [steps]     (CORPUS_DIR holds train/ and validation/)
#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "core/ops.h"
#include "core/random/philox.h"

using namespace strata;
namespace fs = std::filesystem;

namespace {

constexpr int64_t kContext = 32, kEmbed = 32, kHidden = 1024, kBatch = 128;

std::string read_split(const fs::path& dir, size_t cap) {
  if (!fs::is_directory(dir))
    STRATA_FAIL("corpus split ", dir.string(), " is missing; run scripts/get_corpus.sh first");
  std::vector<fs::path> files;
  for (const auto& e : fs::directory_iterator(dir))
    if (e.is_regular_file()) files.push_back(e.path());
  std::sort(files.begin(), files.end());
  std::string text;
  for (const auto& f : files) {
    std::ifstream in(f, std::ios::binary);
    std::stringstream ss;
    ss << in.rdbuf();
    text += ss.str();
    if (text.size() >= cap) break;
  }
  STRATA_CHECK(text.size() > size_t(kContext) + 1, "corpus split ", dir.string(), " is empty");
  return text.substr(0, cap);
}

struct Batch {
  Tensor context;  // [B, kContext] i64
  Tensor next;     // [B] i64
};

// Positions come from Philox keyed by (seed, step): the same run gives the same batches.
Batch sample(const std::string& text, uint64_t seed, uint64_t step, int64_t batch) {
  const Philox rng(seed, RngStream::DataOrder, step);
  std::vector<int64_t> ctx(batch * kContext), nxt(batch);
  const uint64_t span = text.size() - kContext - 1;
  for (int64_t b = 0; b < batch; ++b) {
    const uint64_t pos = (uint64_t(rng.bits(2 * b)) << 32 | rng.bits(2 * b + 1)) % span;
    for (int64_t i = 0; i < kContext; ++i) ctx[b * kContext + i] = uint8_t(text[pos + i]);
    nxt[b] = uint8_t(text[pos + kContext]);
  }
  return {from_vector(ctx, {batch, kContext}), from_vector(nxt, {batch})};
}

struct Model {
  Tensor embed, w1, b1, w2, b2;
  std::vector<Tensor*> params() { return {&embed, &w1, &b1, &w2, &b2}; }
  Tensor logits(const Tensor& context) const {
    Tensor x = embedding(embed, context).reshape({context.size(0), kContext * kEmbed});
    return linear(gelu(linear(x, w1, b1), true), w2, b2);
  }
};

Tensor init(const Shape& shape, double std, uint64_t salt) {
  return randn(shape, RandomKey{1234, uint32_t(RngStream::Init), salt}, DType::f32, 0, std)
      .set_requires_grad(true);
}

double validation_bits_per_byte(const Model& m, const std::string& text) {
  NoGradGuard no_grad;
  double total = 0;
  const int batches = 16;
  for (int i = 0; i < batches; ++i) {
    Batch b = sample(text, 999, uint64_t(i), 256);
    total += cross_entropy(m.logits(b.context), b.next).item<double>();
  }
  return total / batches / std::log(2.0);
}

}  // namespace

int main(int argc, char** argv) {
  prefer_passive_omp_wait(argv);
  try {
    if (argc < 2) {
      std::fprintf(stderr, "usage: %s CORPUS_DIR [steps]\n", argv[0]);
      return 2;
    }
    const fs::path corpus = argv[1];
    const int steps = argc > 2 ? std::stoi(argv[2]) : 1500;
    const std::string train = read_split(corpus / "train", 16 << 20);
    const std::string valid = read_split(corpus / "validation", 1 << 20);
    std::printf("corpus: %zu train bytes, %zu validation bytes; %s\n", train.size(), valid.size(),
                Runtime::get().describe().c_str());

    Model m{init({256, kEmbed}, 1.0, 1), init({kHidden, kContext * kEmbed}, 0.02, 2),
            init({kHidden}, 0.0, 3), init({256, kHidden}, 0.02, 4), init({256}, 0.0, 5)};
    std::vector<Tensor> exp_avg, exp_sq;
    for (Tensor* p : m.params()) {
      exp_avg.push_back(zeros_like(*p));
      exp_sq.push_back(zeros_like(*p));
    }
    std::printf("step %5d  validation %.3f bits/byte (uniform: 8)\n", 0,
                validation_bits_per_byte(m, valid));
    const double lr = 2e-3, b1 = 0.9, b2 = 0.99, eps = 1e-8, wd = 0.01;
    const auto start = std::chrono::steady_clock::now();
    double smoothed = 0;
    for (int step = 1; step <= steps; ++step) {
      Batch b = sample(train, 1, uint64_t(step), kBatch);
      Tensor loss = cross_entropy(m.logits(b.context), b.next);
      loss.backward();
      smoothed = step == 1 ? loss.item<double>() : 0.98 * smoothed + 0.02 * loss.item<double>();
      // AdamW with cosine decay to zero at the last step.
      const double lr_t = lr * 0.5 * (1 + std::cos(M_PI * step / steps));
      NoGradGuard no_grad;
      for (size_t i = 0; i < exp_avg.size(); ++i) {
        Tensor& p = *m.params()[i];
        Tensor g = p.grad();
        exp_avg[i].mul_(b1).add_(g, 1 - b1);
        exp_sq[i].mul_(b2).add_(g * g, 1 - b2);
        const double c1 = 1 - std::pow(b1, step), c2 = 1 - std::pow(b2, step);
        p.mul_(1 - lr_t * wd);
        p.add_((exp_avg[i] * (1 / c1)) / (sqrt(exp_sq[i] * (1 / c2)) + eps), -lr_t);
        p.set_grad({});
      }
      if (step % 250 == 0 || step == steps) {
        const double secs =
            std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
        std::printf("step %5d  train loss %.3f  validation %.3f bits/byte  %.0f bytes/s\n", step,
                    smoothed, validation_bits_per_byte(m, valid), step * kBatch / secs);
        std::fflush(stdout);
      }
    }
    return 0;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "error: %s\n", e.what());
    return 1;
  }
}
