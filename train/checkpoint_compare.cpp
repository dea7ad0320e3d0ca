#include "train/checkpoint_compare.h"

#include <cstring>
#include <sstream>

#include "train/checkpoint.h"

namespace strata::train {

namespace {

bool same_bits(const Tensor& x, const Tensor& y) {
  return x.shape() == y.shape() && x.dtype() == y.dtype() &&
         std::memcmp(x.contiguous().raw_data(), y.contiguous().raw_data(),
                     size_t(x.numel()) * x.element_size()) == 0;
}

}  // namespace

CheckpointComparison compare_checkpoints(const std::filesystem::path& a,
                                         const std::filesystem::path& b) {
  const CheckpointState x = load_checkpoint(a), y = load_checkpoint(b);
  std::ostringstream out;
  int64_t tensors = 0, differ = 0;
  auto note = [&](const std::string& what) {
    if (++differ <= 20) out << "differs: " << what << "\n";
  };
  auto tensor = [&](const std::string& name, const Tensor& t, const Tensor* u) {
    ++tensors;
    if (!u)
      note(name + " (only in " + a.string() + ")");
    else if (!same_bits(t, *u))
      note(name);
  };
  for (const auto& [name, t] : x.model) {
    auto it = y.model.find(name);
    tensor("parameter " + name, t, it == y.model.end() ? nullptr : &it->second);
  }
  for (const auto& [name, t] : y.model)
    if (!x.model.count(name)) note("parameter " + name + " (only in " + b.string() + ")");
  for (const auto& [param, states] : x.optim)
    for (const auto& [k, t] : states) {
      const auto p = y.optim.find(param);
      const Tensor* u = nullptr;
      if (p != y.optim.end())
        if (auto s = p->second.find(k); s != p->second.end()) u = &s->second;
      tensor("optimizer state " + param + "/" + k, t, u);
    }
  for (const char* key : {"step", "loader_counter", "tokens_consumed", "optimizer_steps"}) {
    const auto i = x.ints.find(key), j = y.ints.find(key);
    if (i == x.ints.end() || j == y.ints.end() || i->second != j->second)
      note(std::string("counter ") + key);
  }
  CheckpointComparison c;
  c.identical = differ == 0;
  out << (c.identical ? "identical: " : "different: ") << tensors
      << " tensors compared bit for bit, " << differ << " differences\n";
  c.report = out.str();
  return c;
}

}  // namespace strata::train
