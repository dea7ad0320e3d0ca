#include "train/finetune.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <filesystem>
#include <map>
#include <ostream>

#include "core/ops.h"
#include "core/runtime.h"
#include "data/classification.h"
#include "data/loader.h"
#include "parallel/topology.h"
#include "train/trainer.h"

namespace strata::train {

namespace {

struct Encoded {
  std::vector<std::vector<int32_t>> ids;  // padded with the pad id
  std::vector<int64_t> labels;
};

Encoded encode_all(const data::Tokenizer& tok, const std::vector<data::ClassificationExample>& ex,
                   int64_t seq_len) {
  Encoded e;
  for (const auto& x : ex) {
    e.ids.push_back(data::encode_classification(tok, x, seq_len));
    e.labels.push_back(x.label);
  }
  return e;
}

// The classifier seen from the Trainer: a batch's inputs are the encoded examples (padded with
// the tokenizer's pad id, which also gives the key padding mask) and its single target column is
// the label.
class ClassifierTask final : public Task {
 public:
  ClassifierTask(const models::BertConfig& cfg, int64_t classes, uint64_t seed, int64_t seq_len)
      : model_(cfg, classes, seed), seq_len_(seq_len) {}

  models::BertClassifier& model() { return model_; }
  std::string_view kind() const override { return "classifier"; }
  models::Module& module() override { return model_; }
  std::shared_ptr<const data::Objective> objective() const override { return nullptr; }
  void set_step(uint64_t step) override { model_.set_step(step); }
  void set_batch_rows(int64_t, int64_t) override {}

  Tensor loss(const data::Batch& b) override {
    const Tensor ids = batch_ids(b.inputs, b.rows, b.input_len);
    return model_.loss(ids, labels(b), padding_mask(ids));
  }
  void evaluate(const data::Batch& b, EvalCounts& c) override {
    const Tensor ids = batch_ids(b.inputs, b.rows, b.input_len);
    const Tensor logits = model_.classify(ids, padding_mask(ids));
    c.loss_sum += cross_entropy(logits, labels(b)).item<double>();
    c.batches += 1;
    c.correct += sum(eq(argmax(logits, -1), labels(b))).item<int64_t>();
    c.counted += b.rows;
  }

  int64_t tokens_per_row() const override { return seq_len_; }
  double flops_per_row() const override {
    // The encoder's; the pooler and the classifier are a rounding error beside it.
    return models::BertMLM::flops_per_token(model_.config(), seq_len_, 0.0) * double(seq_len_);
  }
  std::string describe() const override {
    return "classifier on a BERT encoder: " + std::to_string(model_.num_parameters()) +
           " parameters, " + std::to_string(model_.num_classes()) + " classes";
  }
  std::string sample(const data::Tokenizer&, const data::Batch&, const SampleOptions&) override {
    return {};
  }
  std::string generate(const data::Tokenizer&, std::string_view, const SampleOptions&) override {
    STRATA_FAIL("generate: a classifier does not generate text");
  }
  void add_stage_hits(EvalCounts&) const override {}
  void save_spec(CheckpointState&) const override {
    STRATA_FAIL("finetune: classifier runs write no checkpoints");
  }

 private:
  static Tensor labels(const data::Batch& b) {
    return from_vector(std::vector<int64_t>(b.targets.begin(), b.targets.end()), {b.rows});
  }
  Tensor padding_mask(const Tensor& ids) const {
    return ne(ids, scalar_tensor(model_.config().pad_id, DType::i64));
  }

  models::BertClassifier model_;
  int64_t seq_len_;
};

// Examples as batches of `batch` rows, epoch after epoch, each epoch in its own order (the last
// batch of an epoch holds what is left). The counter is examples consumed.
class ExampleBatches final : public BatchSource {
 public:
  ExampleBatches(const Encoded& e, int64_t batch, uint64_t seed)
      : e_(e), batch_(batch), n_(int64_t(e.labels.size())), perm_(uint64_t(n_), seed, true) {}

  data::Batch next() override {
    const int64_t epoch = int64_t(counter_) / n_, begin = int64_t(counter_) % n_;
    const int64_t rows = std::min(batch_, n_ - begin);
    const auto len = int64_t(e_.ids.front().size());
    data::Batch b;
    b.resize(rows, len, 1, false);
    for (int64_t r = 0; r < rows; ++r) {
      const auto x = size_t(perm_(uint64_t(epoch), uint64_t(begin + r)));
      std::copy(e_.ids[x].begin(), e_.ids[x].end(), b.inputs.begin() + r * len);
      b.targets[size_t(r)] = int32_t(e_.labels[x]);
      b.global_index[size_t(r)] = x;
    }
    b.counter = counter_;
    counter_ += uint64_t(rows);
    return b;
  }
  uint64_t counter() const override { return counter_; }
  std::string describe() const override {
    return std::to_string(n_) + " training examples, batches of " + std::to_string(batch_);
  }

 private:
  const Encoded& e_;
  int64_t batch_, n_;
  data::Permutation perm_;
  uint64_t counter_ = 0;
};

// Every example of `e` once, in file order.
EvalCounts validate(Task& task, const Encoded& e, int64_t batch) {
  NoGradGuard no_grad;
  models::EvalModeGuard eval(task.module());
  EvalCounts counts;
  const auto n = int64_t(e.labels.size()), len = int64_t(e.ids.front().size());
  for (int64_t begin = 0; begin < n; begin += batch) {
    data::Batch b;
    b.resize(std::min(batch, n - begin), len, 1, false);
    for (int64_t r = 0; r < b.rows; ++r) {
      std::copy(e.ids[size_t(begin + r)].begin(), e.ids[size_t(begin + r)].end(),
                b.inputs.begin() + r * len);
      b.targets[size_t(r)] = int32_t(e.labels[size_t(begin + r)]);
    }
    task.evaluate(b, counts);
  }
  return counts;
}

}  // namespace

FinetuneResult finetune_classifier(const FinetuneOptions& o, std::ostream& log) {
  STRATA_CHECK(o.batch > 0 && o.epochs > 0 && o.seq_len > 3,
               "finetune: batch and epochs must be positive and seq_len > 3");
  FinetuneResult result;

  // The encoder: from the pre-trained checkpoint, or a fresh one of the preset's size.
  std::unique_ptr<data::Tokenizer> tokenizer;
  LoadedTask pretrained;
  models::BertConfig cfg;
  if (!o.checkpoint.empty()) {
    pretrained = load_trained(o.checkpoint);
    STRATA_CHECK(pretrained.task->kind() == "bert", "finetune: ", o.checkpoint, " holds a ",
                 pretrained.task->kind(),
                 " model; fine-tuning needs a BERT checkpoint "
                 "(strata train --config configs/bert-small.ini)");
    cfg = dynamic_cast<models::BertMLM&>(pretrained.task->module()).config();
    tokenizer = std::move(pretrained.tokenizer);
    result.pretrained = true;
  } else {
    STRATA_CHECK(!o.tokenizer.empty(),
                 "finetune: without --checkpoint, pass --tokenizer (a "
                 "bert-style tokenizer) to train from a random initialisation");
    tokenizer = data::load_tokenizer(o.tokenizer);
    cfg = models::bert_preset(o.preset, tokenizer->vocab_size());
    cfg.pad_id = tokenizer->special().pad;
  }
  STRATA_CHECK(o.seq_len <= cfg.max_seq, "finetune: seq_len ", o.seq_len,
               " exceeds the encoder's position table (", cfg.max_seq, ")");
  cfg.dropout = o.dropout;

  const auto train_ex = data::read_classification_tsv(o.train_file);
  const auto valid_ex = data::read_classification_tsv(o.valid_file);
  int32_t max_label = 0;
  for (const auto& e : train_ex) max_label = std::max(max_label, e.label);
  for (const auto& e : valid_ex) max_label = std::max(max_label, e.label);
  result.classes = int64_t(max_label) + 1;
  STRATA_CHECK(result.classes >= 2, "finetune: ", o.train_file,
               " has a single label; a classification task needs at least two");
  // The best constant answer on the validation set: what a classifier must beat.
  std::map<int32_t, int64_t> valid_counts;
  for (const auto& e : valid_ex) ++valid_counts[e.label];
  int64_t most = 0;
  for (const auto& [label, n] : valid_counts) most = std::max(most, n);
  result.majority_accuracy = double(most) / double(valid_ex.size());
  const Encoded train_set = encode_all(*tokenizer, train_ex, o.seq_len);
  const Encoded valid_set = encode_all(*tokenizer, valid_ex, o.seq_len);
  result.train_examples = int64_t(train_ex.size());
  result.valid_examples = int64_t(valid_ex.size());

  ClassifierTask task(cfg, result.classes, o.seed, o.seq_len);
  if (pretrained.task) task.model().load_encoder(pretrained.task->module());
  const int64_t steps_per_epoch = (result.train_examples + o.batch - 1) / o.batch;
  log << "finetune: "
      << (result.pretrained ? "pre-trained encoder from " + o.checkpoint
                            : "randomly initialised " + o.preset + " encoder")
      << "; " << result.train_examples << " training / " << result.valid_examples
      << " validation examples; " << o.epochs << " epochs of " << steps_per_epoch
      << " steps; majority-class accuracy " << result.majority_accuracy << std::endl;

  // The same Trainer as pre-training, on one process: AdamW, warmup then cosine to 0 over the
  // epochs, no clipping, validation after every epoch, no checkpoints.
  TrainOptions t;
  t.run_dir = o.run_dir;
  t.seed = o.seed;
  t.threads = o.threads;
  t.micro_batch = o.batch;
  t.optimizer = OptimizerKind::AdamW;
  t.lr = o.lr;
  t.weight_decay = o.weight_decay;
  t.beta1 = o.beta1;
  t.beta2 = o.beta2;
  t.eps = o.eps;
  t.clip = 0;
  t.schedule = "cosine-budget";
  t.warmup_steps = int64_t(std::floor(o.warmup_fraction * double(steps_per_epoch * o.epochs)));
  t.final_lr = 0;
  t.budget = double(steps_per_epoch * o.epochs);
  t.log_every = o.log_every;
  t.eval_every = steps_per_epoch;
  t.save_every = 0;
  t.sample_tokens = 0;
  if (o.threads > 0) Runtime::get().set_num_threads(o.threads);
  if (!o.run_dir.empty()) std::filesystem::create_directories(o.run_dir);

  TrainingData data;
  data.open = [&](uint64_t) -> std::unique_ptr<BatchSource> {
    return std::make_unique<ExampleBatches>(train_set, o.batch, o.seed);
  };
  data.validate = [&] { return validate(task, valid_set, o.batch); };
  data.accuracy_name = "accuracy";
  const parallel::Topology one = parallel::Topology::single();
  Trainer trainer(t, log, one, Device::cpu(), task, std::move(data));
  const TrainResult r = trainer.run();

  for (const auto& [step, counts] : r.evaluations) {
    const int64_t epoch = step / steps_per_epoch;
    double loss_sum = 0;
    for (int64_t k = (epoch - 1) * steps_per_epoch; k < epoch * steps_per_epoch; ++k)
      loss_sum += r.losses[size_t(k)];
    result.epoch_loss.push_back(loss_sum / double(steps_per_epoch));
    result.epoch_accuracy.push_back(counts.accuracy());
    log << "epoch " << epoch << "  training loss " << result.epoch_loss.back()
        << "  validation accuracy " << counts.accuracy() << std::endl;
  }
  result.steps = r.step;
  return result;
}

}  // namespace strata::train
