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
#include "optim/adamw.h"
#include "optim/schedule.h"
#include "train/metrics.h"
#include "train/trainer.h"

namespace strata::train {

namespace {

struct Encoded {
  std::vector<std::vector<int32_t>> ids;
  std::vector<int64_t> valid;  // real tokens per example
  std::vector<int64_t> labels;
};

Encoded encode_all(const data::Tokenizer& tok, const std::vector<data::ClassificationExample>& ex,
                   int64_t seq_len) {
  Encoded e;
  for (const auto& x : ex) {
    int64_t valid = 0;
    e.ids.push_back(data::encode_classification(tok, x, seq_len, &valid));
    e.valid.push_back(valid);
    e.labels.push_back(x.label);
  }
  return e;
}

// Rows `order[begin, end)` of `e` as tensors: ids [B, L], key padding mask [B, L], labels [B].
struct Rows {
  Tensor ids, mask, labels;
};
Rows gather_rows(const Encoded& e, const std::vector<int64_t>& order, int64_t begin, int64_t end,
                 int64_t seq_len) {
  std::vector<int64_t> ids, labels;
  std::vector<uint8_t> mask;
  for (int64_t i = begin; i < end; ++i) {
    const auto r = size_t(order[size_t(i)]);
    ids.insert(ids.end(), e.ids[r].begin(), e.ids[r].end());
    for (int64_t t = 0; t < seq_len; ++t) mask.push_back(t < e.valid[r]);
    labels.push_back(e.labels[r]);
  }
  const int64_t B = end - begin;
  Rows out;
  out.ids = from_vector(ids, {B, seq_len});
  out.mask = ne(from_vector(std::vector<int64_t>(mask.begin(), mask.end()), {B, seq_len}),
                scalar_tensor(0, DType::i64));
  out.labels = from_vector(labels, {B});
  return out;
}

double accuracy(models::BertClassifier& model, const Encoded& e, int64_t batch, int64_t seq_len) {
  NoGradGuard no_grad;
  models::EvalModeGuard eval(model);
  std::vector<int64_t> order(e.labels.size());
  for (size_t i = 0; i < order.size(); ++i) order[i] = int64_t(i);
  int64_t hits = 0;
  for (int64_t b = 0; b < int64_t(order.size()); b += batch) {
    const Rows r =
        gather_rows(e, order, b, std::min<int64_t>(b + batch, int64_t(order.size())), seq_len);
    hits += sum(eq(argmax(model.classify(r.ids, r.mask), -1), r.labels)).item<int64_t>();
  }
  return double(hits) / double(std::max<size_t>(order.size(), 1));
}

}  // namespace

FinetuneResult finetune_classifier(const FinetuneOptions& o, std::ostream& log) {
  if (o.threads > 0) Runtime::get().set_num_threads(o.threads);
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

  models::BertClassifier model(cfg, result.classes, o.seed);
  if (pretrained.task) model.load_encoder(pretrained.task->module());
  model.train();

  std::vector<optim::NamedParam> named;
  for (const auto& [name, p] : model.named_parameters()) named.push_back({name, p});
  optim::AdamW opt(
      optim::make_param_groups(named, {o.lr, o.weight_decay, o.beta1, o.beta2, o.eps}));
  const int64_t steps_per_epoch = (result.train_examples + o.batch - 1) / o.batch;
  const int64_t total = steps_per_epoch * o.epochs;
  optim::ScheduleConfig sc;
  sc.name = "cosine-budget";
  sc.base_lr = o.lr;
  sc.warmup_steps = std::floor(o.warmup_fraction * double(total));
  sc.total_steps = double(total);
  sc.floor = 0.0;
  const auto schedule = optim::make_schedule(sc);

  std::optional<MetricsLog> metrics;
  if (!o.run_dir.empty()) {
    std::filesystem::create_directories(o.run_dir);
    metrics.emplace((std::filesystem::path(o.run_dir) / "metrics.jsonl").string());
  }
  log << "finetune: "
      << (result.pretrained ? "pre-trained encoder from " + o.checkpoint
                            : "randomly initialised " + o.preset + " encoder")
      << "; " << model.num_parameters() << " parameters; " << result.classes << " classes; "
      << result.train_examples << " training / " << result.valid_examples
      << " validation examples; " << o.epochs << " epochs of " << steps_per_epoch
      << " steps; majority-class accuracy " << result.majority_accuracy << std::endl;

  const data::Permutation perm(uint64_t(result.train_examples), o.seed, true);
  const auto t0 = std::chrono::steady_clock::now();
  int64_t step = 0;
  for (int64_t epoch = 0; epoch < o.epochs; ++epoch) {
    std::vector<int64_t> order(size_t(result.train_examples));
    for (int64_t i = 0; i < result.train_examples; ++i)
      order[size_t(i)] = int64_t(perm(uint64_t(epoch), uint64_t(i)));
    double loss_sum = 0;
    for (int64_t b = 0; b < result.train_examples; b += o.batch) {
      const Rows r = gather_rows(train_set, order, b,
                                 std::min<int64_t>(b + o.batch, result.train_examples), o.seq_len);
      opt.set_lr(schedule->lr_at(double(step)));
      model.set_step(uint64_t(step));
      Tensor loss = model.loss(r.ids, r.labels, r.mask);
      const double lv = loss.item<double>();
      STRATA_CHECK(std::isfinite(lv), "finetune: the loss became ", lv, " at step ", step + 1,
                   "; lower --optim.lr");
      loss.backward();
      opt.step();
      opt.zero_grad();
      loss_sum += lv;
      ++step;
      if (o.log_every > 0 && step % o.log_every == 0) {
        const double secs =
            std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
        log << "step " << step << "/" << total << "  loss " << lv << "  lr " << opt.lr() << "  "
            << double(step * o.batch) / secs << " examples/s" << std::endl;
      }
    }
    const double acc = accuracy(model, valid_set, o.batch, o.seq_len);
    result.epoch_loss.push_back(loss_sum / double(steps_per_epoch));
    result.epoch_accuracy.push_back(acc);
    log << "epoch " << epoch + 1 << "  training loss " << result.epoch_loss.back()
        << "  validation accuracy " << acc << std::endl;
    if (metrics)
      metrics->write("eval", {{"epoch", double(epoch + 1)},
                              {"step", double(step)},
                              {"loss", result.epoch_loss.back()},
                              {"accuracy", acc}});
  }
  result.steps = step;
  return result;
}

}  // namespace strata::train
