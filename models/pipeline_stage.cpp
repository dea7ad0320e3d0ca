#include "models/pipeline_stage.h"

#include "core/error.h"
#include "core/ops.h"

namespace strata::models {

ModelPart ModelPart::stage(const StageLayout& layout, int stage, int64_t blocks, const char* who,
                           const std::string& blocks_text) {
  STRATA_CHECK(layout.blocks() == blocks, who, ": the layout ", layout.str(), " covers ",
               layout.blocks(), " blocks but the model has ", blocks_text);
  STRATA_CHECK(stage >= 0 && stage < layout.stages(), who, ": stage ", stage, " of the layout ",
               layout.str());
  return {layout.begin(stage), layout.end(stage), stage == 0, stage == layout.stages() - 1};
}

ModelPart ModelPart::resolved(int64_t blocks, const char* who) const {
  ModelPart p = *this;
  if (p.end < 0) p.end = blocks;
  STRATA_CHECK(0 <= p.begin && p.begin <= p.end && p.end <= blocks, who, ": part [", p.begin, ", ",
               p.end, ") of ", blocks, " blocks");
  return p;
}

namespace {

std::string counts_str(const std::vector<int64_t>& counts) {
  std::string s = "[";
  for (size_t i = 0; i < counts.size(); ++i) s += (i ? ", " : "") + std::to_string(counts[i]);
  return s + "]";
}

}  // namespace

StageLayout StageLayout::balanced(int64_t n_blocks, int stages) {
  STRATA_CHECK(stages > 0, "pipeline: the number of stages must be positive, got ", stages);
  STRATA_CHECK(n_blocks >= stages, "pipeline: ", stages, " stages but the model has only ",
               n_blocks, " blocks; every stage needs at least one block (use at most ", n_blocks,
               " pipeline stages)");
  std::vector<int64_t> counts;
  for (int s = 0; s < stages; ++s) counts.push_back(n_blocks / stages + (s < n_blocks % stages));
  return from_counts(counts, n_blocks);
}

StageLayout StageLayout::from_counts(const std::vector<int64_t>& counts, int64_t n_blocks) {
  STRATA_CHECK(!counts.empty(), "pipeline: an empty stage layout; give one block count per stage");
  std::vector<int64_t> bounds{0};
  for (size_t s = 0; s < counts.size(); ++s) {
    STRATA_CHECK(counts[s] > 0, "pipeline: the layout ", counts_str(counts), " gives stage ", s,
                 " no blocks; every stage needs at least one");
    bounds.push_back(bounds.back() + counts[s]);
  }
  STRATA_CHECK(bounds.back() == n_blocks, "pipeline: the layout ", counts_str(counts), " covers ",
               bounds.back(), " blocks but the model has ", n_blocks);
  return StageLayout(std::move(bounds));
}

int64_t StageLayout::begin(int stage) const {
  STRATA_CHECK(stage >= 0 && stage < stages(), "pipeline: stage ", stage, " of a ", stages(),
               "-stage layout");
  return bounds_[size_t(stage)];
}

int64_t StageLayout::end(int stage) const {
  STRATA_CHECK(stage >= 0 && stage < stages(), "pipeline: stage ", stage, " of a ", stages(),
               "-stage layout");
  return bounds_[size_t(stage) + 1];
}

std::string StageLayout::str() const {
  std::vector<int64_t> counts;
  for (int s = 0; s < stages(); ++s) counts.push_back(end(s) - begin(s));
  return counts_str(counts);
}

StageHits count_hits(const Tensor& logits, const Tensor& targets) {
  const Tensor t = targets.to(DType::i64);
  const Tensor valid = ne(t, scalar_tensor(-100, DType::i64));
  return {sum(logical_and(eq(argmax(logits, -1), t), valid)).item<int64_t>(),
          sum(valid).item<int64_t>()};
}

}  // namespace strata::models
