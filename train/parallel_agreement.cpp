#include "train/parallel_agreement.h"

#include <algorithm>
#include <cstring>

#include "core/error.h"

namespace strata::train::detail {

namespace {

// Strings travel as i64 words (a dtype every communicator moves).
Tensor pack(const std::string& s, int64_t words) {
  Tensor t = Tensor::empty({words}, DType::i64);
  std::memset(t.raw_data(), 0, size_t(words) * 8);
  std::memcpy(t.raw_data(), s.data(), s.size());
  return t;
}

int64_t words_for(int64_t bytes) {
  return std::max<int64_t>(1, (bytes + 7) / 8);
}

}  // namespace

std::vector<std::string> all_gather_strings(parallel::Communicator& c, const std::string& s,
                                            std::string_view what) {
  if (c.size() == 1) return {s};
  Tensor len = Tensor::empty({1}, DType::i64);
  len.data<int64_t>()[0] = int64_t(s.size());
  const Tensor lens = c.all_gather(len, 0, what);
  int64_t longest = 0;
  for (int r = 0; r < c.size(); ++r) longest = std::max(longest, lens.data<int64_t>()[r]);
  const int64_t words = words_for(longest);
  const Tensor all = c.all_gather(pack(s, words), 0, what);
  std::vector<std::string> out;
  const char* bytes = static_cast<const char*>(all.raw_data());
  for (int r = 0; r < c.size(); ++r)
    out.emplace_back(bytes + size_t(r * words * 8), size_t(lens.data<int64_t>()[r]));
  return out;
}

std::string broadcast_string(parallel::Communicator& c, const std::string& s, int root,
                             std::string_view what) {
  if (c.size() == 1) return s;
  Tensor len = Tensor::empty({1}, DType::i64);
  len.data<int64_t>()[0] = int64_t(s.size());
  c.broadcast(len, root, what);
  const int64_t n = len.data<int64_t>()[0];
  Tensor buf = pack(c.rank() == root ? s : std::string(), words_for(n));
  c.broadcast(buf, root, what);
  return std::string(static_cast<const char*>(buf.raw_data()), size_t(n));
}

void agree(parallel::Communicator& c, bool failed, const std::string& message,
           std::string_view what) {
  if (c.size() == 1) {
    if (failed) throw Error(message);
    return;
  }
  // The max of (size - rank) over the failing ranks names the lowest of them.
  Tensor flag = Tensor::empty({1}, DType::i64);
  flag.data<int64_t>()[0] = failed ? int64_t(c.size() - c.rank()) : 0;
  c.all_reduce(flag, parallel::ReduceOp::Max, what);
  const int64_t m = flag.data<int64_t>()[0];
  if (m == 0) return;
  const int root = c.size() - int(m);
  const std::string text = broadcast_string(c, message, root, what);
  throw Error(text + " [" + c.name() + " rank " + std::to_string(root) + "]");
}

}  // namespace strata::train::detail
