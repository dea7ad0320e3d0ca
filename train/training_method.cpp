#include "train/training_method.h"

#include <algorithm>

#include "core/error.h"

namespace strata::train {

data::Batch select_rows(const data::Batch& b, const std::vector<int64_t>& rows) {
  STRATA_CHECK(!rows.empty(), "select_rows: a micro-batch must keep at least one row");
  data::Batch out;
  out.resize(int64_t(rows.size()), b.input_len, b.target_len, !b.decoder_inputs.empty());
  out.counter = b.counter;
  out.global_index.clear();
  out.sample.clear();
  for (size_t k = 0; k < rows.size(); ++k) {
    const int64_t r = rows[k];
    STRATA_CHECK(r >= 0 && r < b.rows, "select_rows: row ", r, " of a ", b.rows, "-row batch");
    std::copy_n(b.inputs.begin() + r * b.input_len, b.input_len,
                out.inputs.begin() + int64_t(k) * b.input_len);
    std::copy_n(b.targets.begin() + r * b.target_len, b.target_len,
                out.targets.begin() + int64_t(k) * b.target_len);
    if (!b.decoder_inputs.empty())
      std::copy_n(b.decoder_inputs.begin() + r * b.target_len, b.target_len,
                  out.decoder_inputs.begin() + int64_t(k) * b.target_len);
    if (size_t(r) < b.global_index.size()) out.global_index.push_back(b.global_index[size_t(r)]);
    if (size_t(r) < b.sample.size()) out.sample.push_back(b.sample[size_t(r)]);
  }
  return out;
}

}  // namespace strata::train
