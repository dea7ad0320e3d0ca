#pragma once
// A tokenised corpus as the objectives see it: one flat stream of token ids cut into documents.
// Backed by memory-mapped shards in training and by plain vectors in tests.
#include <cstdint>
#include <span>
#include <vector>

namespace strata::data {

class TokenDocuments {
 public:
  virtual ~TokenDocuments() = default;
  int64_t num_documents() const { return int64_t(starts_.size()) - 1; }
  int64_t num_tokens() const { return starts_.back(); }
  // Document d is tokens [starts()[d], starts()[d + 1]) of the stream.
  std::span<const int64_t> starts() const { return starts_; }
  // Copies stream tokens [begin, end) to out.
  virtual void read(int64_t begin, int64_t end, int32_t* out) const = 0;

 protected:
  std::vector<int64_t> starts_{0};
};

class InMemoryDocuments final : public TokenDocuments {
 public:
  explicit InMemoryDocuments(const std::vector<std::vector<int32_t>>& docs) {
    for (const auto& d : docs) {
      tokens_.insert(tokens_.end(), d.begin(), d.end());
      starts_.push_back(int64_t(tokens_.size()));
    }
  }
  void read(int64_t begin, int64_t end, int32_t* out) const override {
    std::copy(tokens_.begin() + begin, tokens_.begin() + end, out);
  }

 private:
  std::vector<int32_t> tokens_;
};

}  // namespace strata::data
