#pragma once
// Cuts a tokenised corpus into fixed-size raw samples, the unit the loader permutes and the
// objectives turn into batch rows.
//
// Packed: documents are joined into one stream with `separator` after each (EOS for T5 and causal
//   LM, [SEP] for BERT; none when separator < 0); sample i is stream [i*stride, i*stride+window).
// Documents: each document (plus its separator) is cut on its own; a window never crosses a
//   document boundary and the tail is padded. Used by causal LM when boundaries are respected.
#include <cstdint>
#include <memory>
#include <vector>

#include "data/documents.h"

namespace strata::data {

enum class Packing { Packed, Documents };

struct SampleLayout {
  int64_t window = 0;  // raw tokens per sample
  int64_t stride = 0;  // start-to-start distance (window - 1 for causal LM: one token overlaps)
  Packing packing = Packing::Packed;
  int32_t separator = -1;
  int32_t pad = 0;  // fills the tail of a Documents-mode window
};

class SampleSource {
 public:
  SampleSource(std::shared_ptr<const TokenDocuments> docs, SampleLayout layout);
  int64_t size() const { return size_; }
  const SampleLayout& layout() const { return layout_; }
  // Writes sample i (layout().window ids) to out; returns how many are real tokens, not padding.
  int64_t get(int64_t i, int32_t* out) const;

 private:
  int64_t copy_stream(int64_t begin, int64_t end, int32_t* out) const;  // packed stream range

  std::shared_ptr<const TokenDocuments> docs_;
  SampleLayout layout_;
  int64_t size_ = 0;
  std::vector<int64_t> first_sample_;  // Documents mode: first sample index of each document
};

}  // namespace strata::data
