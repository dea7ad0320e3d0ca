#include "data/samples.h"

#include <algorithm>

#include "core/error.h"

namespace strata::data {

SampleSource::SampleSource(std::shared_ptr<const TokenDocuments> docs, SampleLayout layout)
    : docs_(std::move(docs)), layout_(layout) {
  STRATA_CHECK(docs_ != nullptr, "SampleSource: no documents");
  STRATA_CHECK(layout_.window > 0 && layout_.stride > 0 && layout_.stride <= layout_.window,
               "SampleSource: window ", layout_.window, " and stride ", layout_.stride,
               ", expected 0 < stride <= window");
  const int64_t sep = layout_.separator >= 0 ? 1 : 0;
  const auto starts = docs_->starts();
  if (layout_.packing == Packing::Packed) {
    const int64_t stream = docs_->num_tokens() + sep * docs_->num_documents();
    size_ = stream >= layout_.window ? (stream - layout_.window) / layout_.stride + 1 : 0;
  } else {
    const int64_t overlap = layout_.window - layout_.stride;
    first_sample_.reserve(size_t(docs_->num_documents()) + 1);
    int64_t total = 0;
    for (int64_t d = 0; d < docs_->num_documents(); ++d) {
      first_sample_.push_back(total);
      const int64_t len = starts[size_t(d) + 1] - starts[size_t(d)] + sep;
      if (len > overlap) total += (len - overlap + layout_.stride - 1) / layout_.stride;
    }
    first_sample_.push_back(total);
    size_ = total;
  }
}

int64_t SampleSource::copy_stream(int64_t begin, int64_t end, int32_t* out) const {
  const int64_t sep = layout_.separator >= 0 ? 1 : 0;
  const auto starts = docs_->starts();
  const int64_t ndocs = docs_->num_documents();
  // Document d occupies packed positions [starts[d] + d*sep, starts[d+1] + d*sep), then its
  // separator: a binary search on starts[d] + d*sep finds the document holding `begin`.
  int64_t lo = 0, hi = ndocs - 1;
  while (lo < hi) {
    const int64_t mid = (lo + hi + 1) / 2;
    if (starts[size_t(mid)] + mid * sep <= begin)
      lo = mid;
    else
      hi = mid - 1;
  }
  int64_t d = lo, pos = begin;
  int32_t* const first = out;
  while (pos < end) {
    const int64_t dbeg = starts[size_t(d)] + d * sep, dend = starts[size_t(d) + 1] + d * sep;
    if (pos < dend) {
      const int64_t stop = std::min(end, dend);
      docs_->read(starts[size_t(d)] + (pos - dbeg), starts[size_t(d)] + (stop - dbeg), out);
      out += stop - pos;
      pos = stop;
    }
    if (pos < end && sep && pos == dend) {
      *out++ = layout_.separator;
      ++pos;
    }
    if (pos >= dend + sep) ++d;
  }
  return out - first;
}

int64_t SampleSource::get(int64_t i, int32_t* out) const {
  STRATA_CHECK(i >= 0 && i < size_, "SampleSource: sample ", i, " of ", size_);
  const int64_t w = layout_.window;
  if (layout_.packing == Packing::Packed)
    return copy_stream(i * layout_.stride, i * layout_.stride + w, out);
  const int64_t d = int64_t(std::upper_bound(first_sample_.begin(), first_sample_.end(), i) -
                            first_sample_.begin()) -
                    1;
  const auto starts = docs_->starts();
  const int64_t sep = layout_.separator >= 0 ? 1 : 0;
  const int64_t len = starts[size_t(d) + 1] - starts[size_t(d)];
  const int64_t begin = (i - first_sample_[size_t(d)]) * layout_.stride;
  const int64_t end = std::min(begin + w, len + sep);
  const int64_t from_doc = std::max<int64_t>(0, std::min(end, len) - begin);
  docs_->read(starts[size_t(d)] + begin, starts[size_t(d)] + begin + from_doc, out);
  int64_t n = from_doc;
  if (sep && end == len + 1) out[n++] = layout_.separator;
  std::fill(out + n, out + w, layout_.pad);
  return n;
}

}  // namespace strata::data
