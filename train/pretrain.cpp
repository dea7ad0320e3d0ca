// Pre-training's setup around the Trainer (train/trainer.h): the device and layout, the tokenizer
// and prepared shards, the task, the loader and the validation pass, and the sample at the end.
#include <chrono>
#include <cmath>
#include <ostream>

#include "core/device_select.h"
#include "core/ops.h"
#include "data/loader.h"
#include "data/shards.h"
#include "data/tokenizer.h"
#include "data/unigram_baseline.h"
#include "parallel/topology.h"
#include "train/checkpoint.h"
#include "train/parallel_agreement.h"
#include "train/parallel_step.h"
#include "train/trainer.h"

namespace strata::train {

namespace {

// The prepared shards through data::Loader (prefetching, rank-sharded, resumable by counter).
class LoaderSource final : public BatchSource {
 public:
  LoaderSource(std::shared_ptr<const data::TokenDocuments> docs,
               std::shared_ptr<const data::Objective> objective, const data::LoaderOptions& lo,
               uint64_t counter)
      : name_(objective->name()), loader_(std::move(docs), std::move(objective), lo, counter) {}
  data::Batch next() override { return loader_.next(); }
  uint64_t counter() const override { return loader_.counter(); }
  std::string describe() const override {
    return std::to_string(loader_.num_samples()) + " training samples (" + name_ + ")";
  }

 private:
  std::string name_;
  data::Loader loader_;
};

// Mean loss and accuracy over the first `batches` validation batches (fixed order).
EvalCounts evaluate(Task& task, const data::SampleSource& samples, const data::Permutation& order,
                    const data::LoaderOptions& lo, int64_t batches) {
  NoGradGuard no_grad;
  models::EvalModeGuard eval_mode(task.module());
  EvalCounts counts;
  for (int64_t b = 0; b < batches; ++b)
    task.evaluate(
        data::build_batch(samples, *task.objective(), order, lo, uint64_t(b * lo.global_batch)),
        counts);
  return counts;
}

}  // namespace

LoadedTask load_trained(const std::string& dir) {
  const CheckpointState s = load_checkpoint(dir);
  LoadedTask out;
  auto path = s.strings.find("tokenizer_path");
  STRATA_CHECK(path != s.strings.end(), "load: ", dir,
               " has no tokenizer_path; was it written by `strata train`?");
  out.tokenizer = data::load_tokenizer(path->second);
  auto fp = s.strings.find("tokenizer_fingerprint");
  STRATA_CHECK(fp != s.strings.end() && fp->second == out.tokenizer->fingerprint(), "load: ", dir,
               " was trained with a different tokenizer than the one now at ", path->second);
  out.task = make_task(s, *out.tokenizer);
  out.step = s.ints.at("step");
  return out;
}

TrainResult train(const TrainOptions& o, std::ostream& log,
                  std::vector<std::unique_ptr<TrainingMethod>> methods) {
  // run.device is checked first, so a bad one is named before any collective starts. GPU runs
  // build their groups over NCCL (CUDA tensors over NCCL, host scalars still over MPI).
  const Device device = resolve_device(o.device, "run.device");
  const parallel::Layout layout{o.parallel.dp, o.parallel.tp, o.parallel.pp};
  const parallel::Topology topology = parallel::Topology::create(
      layout, device.is_cpu() ? parallel::CommBackend::Mpi : parallel::CommBackend::Nccl);
  return train(o, log, topology, std::move(methods));
}

TrainResult train(const TrainOptions& o, std::ostream& log_all, const parallel::Topology& topo,
                  std::vector<std::unique_ptr<TrainingMethod>> methods) {
  const bool parallel_job = topo.world_size() > 1;
  const parallel::Layout& layout = topo.layout();
  std::ostream quiet(nullptr);  // every rank but world rank 0 is silent
  std::ostream& log = topo.world_rank() == 0 ? log_all : quiet;
  if (parallel_job)
    for (parallel::Communicator* c : {&topo.world(), &topo.tp(), &topo.dp(), &topo.pp()})
      c->set_timeout(std::chrono::milliseconds(int64_t(o.parallel.timeout_s * 1e3)));

  // The device first, so a run that cannot have it fails before reading anything. In a parallel
  // job the topology has picked each rank's GPU (node-local rank) and set up NCCL for it.
  Device device;
  auto pick_device = [&] {
    device = resolve_device(o.device, "run.device", topo.local_rank());
    if (!parallel_job || device.is_cpu()) return;
    STRATA_CHECK(topo.backend() == parallel::CommBackend::Nccl, "run.device = ", o.device,
                 ": a parallel job on GPUs needs its topology made with the NCCL backend");
    STRATA_CHECK(o.device == "cuda" || device == topo.device(), "run.device = ", o.device,
                 ": under mpirun each rank takes the GPU of its node-local rank (",
                 topo.device().str(), " here); set run.device = cuda");
    device = topo.device();
  };
  if (parallel_job)
    detail::on_all_ranks(topo.world(), "train.device", pick_device);
  else
    pick_device();
  if (o.threads > 0) Runtime::get().set_num_threads(o.threads);
  micro_batches_per_step(o, layout);  // bad batch options fail before any file is read

  // Everything a rank can fail at alone (a missing file on one node) fails every rank alike.
  std::unique_ptr<data::Tokenizer> tokenizer;
  std::shared_ptr<data::ShardedDataset> train_docs, valid_docs;
  std::unique_ptr<Task> task;
  auto setup = [&] {
    tokenizer = data::load_tokenizer(o.tokenizer);
    train_docs = std::make_shared<data::ShardedDataset>(o.train_data);
    valid_docs = std::make_shared<data::ShardedDataset>(o.valid_data);
    train_docs->require_tokenizer(tokenizer->fingerprint());
    valid_docs->require_tokenizer(tokenizer->fingerprint());
    TaskPlacement placement;
    placement.tp = &topo.tp();
    placement.pp_stages = layout.pp;
    placement.pp_stage = topo.coords().pp;
    try {
      task = make_task(o.model, o.objective, *tokenizer, o.seed, placement);
    } catch (const Error& e) {
      if (!parallel_job) throw;
      STRATA_FAIL(e.what(), " (parallel layout ", layout.str(), " on ", topo.world_size(),
                  " ranks)");
    }
  };
  if (parallel_job)
    detail::on_all_ranks(topo.world(), "train.setup", setup);
  else
    setup();
  STRATA_CHECK(!o.run_dir.empty(), "train: run.dir is empty; name the run directory");

  // Data: rank r of the dp group builds rows r, r + dp, ... of each micro-batch.
  const auto objective = task->objective();
  data::LoaderOptions lo;
  lo.seed = o.seed;
  lo.global_batch = o.micro_batch;
  lo.dp_rank = topo.coords().dp;
  lo.dp_size = layout.dp;
  task->set_batch_rows(lo.dp_rank, lo.dp_size);
  data::LoaderOptions vlo = lo;
  vlo.shuffle = false;
  const data::SampleSource valid_samples(valid_docs, objective->layout());
  const data::Permutation valid_order(uint64_t(valid_samples.size()), o.seed, false);

  TrainingData data;
  data.open = [&](uint64_t counter) -> std::unique_ptr<BatchSource> {
    return std::make_unique<LoaderSource>(train_docs, objective, lo, counter);
  };
  data.validate = [&] {
    return parallel_job
               ? evaluate_parallel(*task, valid_samples, valid_order, vlo, o.eval_batches, topo)
               : evaluate(*task, valid_samples, valid_order, vlo, o.eval_batches);
  };
  data.tokenizer_fingerprint = tokenizer->fingerprint();
  data.after_setup = [&](Trainer& trainer) {
    if (topo.world_rank() != 0) return;
    const double unigram =
        data::unigram_cross_entropy(*train_docs, *valid_docs, tokenizer->vocab_size());
    const double uniform = std::log(double(tokenizer->vocab_size()));
    trainer.log() << "reference: a unigram model scores " << unigram
                  << " nats/token on the validation split; a uniform guess " << uniform << "\n";
    trainer.write_metrics("baseline", {{"unigram_loss", unigram}, {"uniform_loss", uniform}});
  };
  Trainer trainer(o, log_all, topo, device, *task, std::move(data));
  for (auto& m : methods) trainer.add_method(std::move(m));
  TrainResult result = trainer.run();

  if (o.sample_tokens > 0 && layout.pp == 1) {
    // Generation is a few small steps with host-side decoding between them: it runs on a CPU
    // copy of the trained model (the run is over, so the model is moved rather than copied).
    if (!device.is_cpu()) task->module().to(Device::cpu());
    SampleOptions so;
    so.prompt = o.sample_prompt;
    so.max_new_tokens = o.sample_tokens;
    so.seed = o.seed;
    result.sample = task->sample(
        *tokenizer, data::build_batch(valid_samples, *objective, valid_order, vlo, 0), so);
    log << "sample: " << result.sample << "\n";
  } else if (o.sample_tokens > 0) {
    // Sampling runs the whole model, which no stage holds (and may not fit one process).
    log << "sample: skipped under pipeline parallelism (no rank holds the whole model); run "
           "`strata generate --checkpoint "
        << (std::filesystem::path(o.run_dir) / checkpoint_dir_name(result.step)).string()
        << " --prompt ...` on the checkpoint\n";
  }
  return result;
}

}  // namespace strata::train
