#include "train/calibrate.h"

#include <algorithm>
#include <functional>
#include <ostream>

#include "core/median_time.h"
#include "core/ops.h"
#include "core/random/philox.h"
#include "core/runtime.h"
#include "parallel/topology.h"

namespace strata::train {

namespace {

// The model's depth: blocks for the decoder and BERT, blocks per stack for T5.
int64_t depth(const ModelSpec& m) {
  if (m.type == "bert") return m.bert.n_layers;
  if (m.type == "t5") return std::max(m.t5.n_layers, m.t5.decoder_layers());
  return m.decoder.n_layers;
}

ModelSpec with_depth(ModelSpec m, int64_t layers) {
  m.decoder.n_layers = m.bert.n_layers = m.t5.n_layers = layers;
  m.t5.n_decoder_layers = layers;
  return m;
}

// A micro-batch of random tokens, built by the objective as it builds real samples.
data::Batch random_batch(const data::Objective& objective, int64_t rows, int64_t vocab, int32_t pad,
                         uint64_t seed) {
  data::Batch b;
  b.resize(rows, objective.input_len(), objective.target_len(), objective.encoder_decoder());
  const auto window = size_t(objective.layout().window);
  std::vector<int32_t> raw(window);
  for (int64_t r = 0; r < rows; ++r) {
    const Philox rng(seed, RngStream::Test, uint64_t(r));
    // Any id but padding, which would shorten a row (what a step costs does not depend on which
    // tokens it sees, only on how many).
    for (size_t i = 0; i < window; ++i) {
      raw[i] = int32_t(rng.bits(i) % uint64_t(vocab));
      if (raw[i] == pad) raw[i] = int32_t((pad + 1) % vocab);
    }
    objective.build(raw, int64_t(window), seed, uint64_t(r), b, r);
  }
  return b;
}

}  // namespace

ReferenceCosts calibrate(const TrainOptions& o, const data::Tokenizer& tokenizer,
                         const CalibrateOptions& c, std::ostream& log) {
  STRATA_CHECK(c.reps >= 1, "calibrate.reps must be >= 1, got ", c.reps);
  if (o.threads > 0) Runtime::get().set_num_threads(o.threads);
  const int64_t full = depth(o.model);
  std::string model;
  std::map<int, WorkCosts> rows;
  const parallel::Topology one = parallel::Topology::single();
  for (int64_t layers = c.all_depths ? 1 : full; layers <= full; ++layers) {
    std::unique_ptr<Task> task =
        make_task(with_depth(o.model, layers), o.objective, tokenizer, o.seed);
    if (layers == full) model = task->describe();
    task->module().train();
    const data::Batch batch = random_batch(*task->objective(), o.micro_batch,
                                           tokenizer.vocab_size(), tokenizer.special().pad, o.seed);
    const double tokens = double(batch.rows * batch.input_len);
    const auto opt = make_optimizer(o, task->module(), one.tp());
    const double forward = median_seconds(c.reps, 1, [&] {
      NoGradGuard no_grad;
      task->loss(batch).item<double>();
    });
    const double forward_backward = median_seconds(c.reps, 1, [&] {
      task->loss(batch).backward();
      opt->zero_grad();
    });
    task->loss(batch).backward();  // gradients for the update's timing
    const double update = median_seconds(c.reps, 1, [&] { opt->step(); });
    WorkCosts w;
    w.forward_per_token = forward / tokens;
    // Timing noise can make a forward + backward look cheaper than twice a forward on tiny
    // models; a backward never costs less than a forward's worth of work.
    w.backward_per_token = std::max(forward_backward - forward, forward) / tokens;
    w.per_update = update;
    rows[int(layers)] = w;
    log << "calibrate: " << layers << " layers: forward " << w.forward_per_token * 1e6
        << " us/token, backward " << w.backward_per_token * 1e6 << " us/token, update "
        << w.per_update * 1e3 << " ms\n";
  }
  return ReferenceCosts(model, rows);
}

}  // namespace strata::train
