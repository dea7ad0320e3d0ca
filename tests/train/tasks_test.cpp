// BERT and T5 through the same trainer as the decoder: the loss falls, a resumed run equals the
// straight one bit for bit, a checkpoint rebuilds the task, and a tokenizer without what the
// objective needs is a clear error. Fine-tuning a classifier learns an easy task.
#include <gtest/gtest.h>

#include <cctype>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>

#include "core/ops.h"
#include "data/classification.h"
#include "data/prepare.h"
#include "data/tokenizer.h"
#include "models/bert.h"
#include "models/t5.h"
#include "tests/train/task_corpus.h"
#include "train/checkpoint.h"
#include "train/finetune.h"
#include "train/trainer.h"

namespace strata::train {
namespace {

namespace fs = std::filesystem;

// A small corpus of varied sentences, with a bert-style and a t5-style tokenizer and shards for
// each.
struct TaskData {
  fs::path root;
  TaskData() {
    root = fs::temp_directory_path() / ("strata_tasks_test_" + std::to_string(::getpid()));
    fixtures::write_task_text(root);
    for (const std::string style : {"bert", "t5"})
      fixtures::prepare_task_shards(root, *fixtures::train_task_tokenizer(root, style), style);
  }
  ~TaskData() { fs::remove_all(root); }

  TrainOptions options(const std::string& type, const std::string& run) const {
    TrainOptions o;
    const std::string style = type == "bert" ? "bert" : "t5";
    o.run_dir = (root / run).string();
    o.tokenizer = (root / (style + ".tok")).string();
    o.train_data = (root / (style + "-train")).string();
    o.valid_data = (root / (style + "-valid")).string();
    o.objective.seq_len = 32;
    o.micro_batch = 8;
    o.model.type = type;
    if (type == "bert") {
      o.model.bert = models::bert_preset("bert-tiny");
      o.model.bert.vocab = 0;
      o.model.bert.dropout = 0.1;  // exercises the dropout keys across a resume
      o.lr = 3e-3;
      o.beta2 = 0.98;
      o.eps = 1e-12;
      o.weight_decay = 0.01;
      o.clip = 0.5;
      o.schedule = "budget-one-cycle";
    } else {
      o.model.t5 = models::t5_preset("t5-tiny");
      o.model.t5.vocab = 0;
      o.model.t5.dropout = 0.1;
      o.optimizer = OptimizerKind::AdamWScale;
      o.lr = 1e-2;
      o.beta2 = 0.999;
      o.eps = 1e-6;
      o.weight_decay = 0;
      o.warmup_steps = 4;
    }
    o.budget = 40;
    o.log_every = 10;
    o.eval_every = 20;
    o.eval_batches = 2;
    o.save_every = 20;
    o.peak_gflops = 1;
    o.sample_tokens = 8;
    return o;
  }
};

const TaskData& data_set() {
  static TaskData d;
  return d;
}

void expect_same_parameters(const CheckpointState& a, const CheckpointState& b) {
  ASSERT_EQ(a.model.size(), b.model.size());
  for (const auto& [name, t] : a.model) {
    const Tensor& u = b.model.at(name);
    ASSERT_EQ(t.shape(), u.shape()) << name;
    EXPECT_EQ(std::memcmp(t.contiguous().raw_data(), u.contiguous().raw_data(),
                          size_t(t.numel()) * t.element_size()),
              0)
        << "parameter " << name << " differs";
  }
}

class TaskTraining : public ::testing::TestWithParam<std::string> {};

TEST_P(TaskTraining, LossFallsBelowTheUnigramBaseline) {
  TrainOptions o = data_set().options(GetParam(), GetParam() + "-falls");
  // MLM learns from the 15% selected tokens only and sits on the unigram plateau for a few
  // hundred steps before its attention finds the context; span corruption gets there sooner.
  const int64_t steps = GetParam() == "bert" ? 1000 : 150;
  o.budget = double(steps);
  o.lr = GetParam() == "bert" ? 3e-3 : o.lr;
  o.eval_every = 0;
  o.save_every = 0;
  o.eval_batches = 4;
  std::ostringstream log;
  const TrainResult r = train(o, log);
  ASSERT_EQ(r.step, steps) << log.str();
  double first = 0, last = 0;
  for (int i = 0; i < 10; ++i) first += r.losses[size_t(i)] / 10;
  for (int64_t i = steps - 10; i < steps; ++i) last += r.losses[size_t(i)] / 10;
  EXPECT_LT(last, first - 0.5) << log.str();
  // The trainer states the unigram reference; the model must beat it clearly.
  const std::string text = log.str();
  const auto at = text.find("a unigram model scores ");
  ASSERT_NE(at, std::string::npos) << text;
  const double unigram = std::stod(text.substr(at + 23));
  EXPECT_LT(r.valid_loss, unigram - 0.3) << text;
  EXPECT_GT(r.valid_accuracy, 0.15) << text;
  EXPECT_FALSE(r.sample.empty());
}

TEST_P(TaskTraining, ResumedRunEqualsStraightRunBitForBit) {
  std::ostringstream log;
  const TrainResult straight = train(data_set().options(GetParam(), GetParam() + "-straight"), log);
  TrainOptions first = data_set().options(GetParam(), GetParam() + "-interrupted");
  first.stop_after = 13;
  const TrainResult a = train(first, log);
  ASSERT_EQ(a.step, 13);
  const TrainResult b = train(data_set().options(GetParam(), GetParam() + "-interrupted"), log);
  ASSERT_EQ(b.resumed_from, 13) << log.str();
  ASSERT_EQ(b.step, 40);
  for (size_t i = 0; i < b.losses.size(); ++i)
    EXPECT_EQ(b.losses[i], straight.losses[13 + i]) << "step " << 14 + i;
  EXPECT_EQ(b.valid_loss, straight.valid_loss);
  expect_same_parameters(
      load_checkpoint(data_set().root / (GetParam() + "-straight") / "step_000000040"),
      load_checkpoint(data_set().root / (GetParam() + "-interrupted") / "step_000000040"));
}

TEST_P(TaskTraining, CheckpointRebuildsTheTrainedModel) {
  TrainOptions o = data_set().options(GetParam(), GetParam() + "-reload");
  o.budget = 3;
  o.warmup_steps = 0;
  o.sample_tokens = 0;
  std::ostringstream log;
  train(o, log);
  const fs::path dir = data_set().root / (GetParam() + "-reload") / "step_000000003";
  const LoadedTask t = load_trained(dir.string());
  EXPECT_EQ(t.task->kind(), GetParam());
  EXPECT_EQ(t.step, 3);
  const CheckpointState s = load_checkpoint(dir);
  for (const auto& [name, p] : t.task->module().named_parameters())
    EXPECT_EQ(std::memcmp(p.contiguous().raw_data(), s.model.at(name).contiguous().raw_data(),
                          size_t(p.numel()) * p.element_size()),
              0)
        << name;
  SampleOptions so;
  so.max_new_tokens = 5;
  if (GetParam() == "bert") {
    EXPECT_THROW(t.task->generate(*t.tokenizer, "the cat", so), Error);
  } else {
    EXPECT_NO_THROW(t.task->generate(*t.tokenizer, "the cat sat on", so));
  }
}

TEST_P(TaskTraining, ResumingAnotherModelTypeIsAnError) {
  TrainOptions o = data_set().options(GetParam(), GetParam() + "-other");
  o.budget = 2;
  o.warmup_steps = 0;
  std::ostringstream log;
  train(o, log);
  TrainOptions other = data_set().options(GetParam() == "bert" ? "t5" : "bert", "unused");
  other.run_dir = o.run_dir;
  other.budget = 4;
  other.warmup_steps = 0;
  try {
    train(other, log);
    FAIL() << "resumed a " << GetParam() << " checkpoint as another model";
  } catch (const Error& e) {
    // Either the tokenizer check or the model check fires; both name the problem.
    const std::string m = e.what();
    EXPECT_TRUE(m.find("model") != std::string::npos || m.find("tokenizer") != std::string::npos)
        << m;
  }
}

INSTANTIATE_TEST_SUITE_P(Models, TaskTraining, ::testing::Values("bert", "t5"),
                         [](const auto& info) { return info.param; });

TEST(TaskTraining, TokenizerWithoutWhatTheObjectiveNeedsIsAClearError) {
  std::ostringstream log;
  TrainOptions bert = data_set().options("bert", "bert-wrong-tok");
  bert.tokenizer = data_set().options("t5", "x").tokenizer;
  bert.train_data = data_set().options("t5", "x").train_data;
  bert.valid_data = data_set().options("t5", "x").valid_data;
  try {
    train(bert, log);
    FAIL() << "BERT trained with a t5-style tokenizer";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("--style bert"), std::string::npos) << e.what();
  }
  TrainOptions t5 = data_set().options("t5", "t5-wrong-tok");
  t5.tokenizer = data_set().options("bert", "x").tokenizer;
  t5.train_data = data_set().options("bert", "x").train_data;
  t5.valid_data = data_set().options("bert", "x").valid_data;
  try {
    train(t5, log);
    FAIL() << "T5 trained with a bert-style tokenizer";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("sentinels"), std::string::npos) << e.what();
  }
}

// An easy two-class task (does the sentence mention an animal?) that a small classifier learns.
void write_animal_task(const fs::path& path, int64_t n, uint64_t salt) {
  const char* animals[] = {"cat", "dog", "bird", "fish"};
  const char* people[] = {"farmer", "child", "teacher", "neighbour"};
  const char* places[] = {"the mat", "the door", "a tall tree", "the river"};
  std::vector<data::ClassificationExample> ex;
  for (int64_t i = 0; i < n; ++i) {
    data::ClassificationExample e;
    e.label = int32_t((i * 7 + int64_t(salt)) % 3 == 0);
    const auto k = size_t((i + int64_t(salt)) % 4), j = size_t((i / 4) % 4);
    e.text_a = std::string("the ") + (e.label ? animals[k] : people[k]) + " sat on " + places[j];
    ex.push_back(e);
  }
  data::write_classification_tsv(path.string(), ex);
}

TEST(Finetune, ClassifierLearnsAnEasyTaskAndLoadsThePretrainedEncoder) {
  const fs::path dir = data_set().root / "finetune";
  fs::create_directories(dir);
  write_animal_task(dir / "train.tsv", 256, 0);
  write_animal_task(dir / "valid.tsv", 64, 1);
  // A short BERT pre-training run to start from.
  TrainOptions pre = data_set().options("bert", "bert-pre");
  pre.budget = 10;
  pre.sample_tokens = 0;
  std::ostringstream log;
  train(pre, log);

  FinetuneOptions o;
  o.checkpoint = (data_set().root / "bert-pre" / "step_000000010").string();
  o.train_file = (dir / "train.tsv").string();
  o.valid_file = (dir / "valid.tsv").string();
  o.seq_len = 16;
  o.batch = 16;
  o.epochs = 4;
  o.lr = 2e-3;
  o.log_every = 0;
  const FinetuneResult r = finetune_classifier(o, log);
  EXPECT_TRUE(r.pretrained);
  EXPECT_EQ(r.classes, 2);
  ASSERT_EQ(r.epoch_accuracy.size(), 4u);
  EXPECT_GT(r.epoch_accuracy.back(), 0.95) << log.str();
  EXPECT_LT(r.majority_accuracy, 0.75);
  EXPECT_LT(r.epoch_loss.back(), r.epoch_loss.front()) << log.str();

  // A decoder-free mistake: fine-tuning a T5 checkpoint names the problem.
  TrainOptions t5 = data_set().options("t5", "t5-pre");
  t5.budget = 1;
  t5.warmup_steps = 0;
  t5.sample_tokens = 0;
  train(t5, log);
  o.checkpoint = (data_set().root / "t5-pre" / "step_000000001").string();
  try {
    finetune_classifier(o, log);
    FAIL() << "fine-tuned a T5 checkpoint as BERT";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("BERT checkpoint"), std::string::npos) << e.what();
  }
}

TEST(Classification, TsvRoundTripAndErrorsNameTheLine) {
  const fs::path dir = data_set().root / "tsv";
  fs::create_directories(dir);
  std::vector<data::ClassificationExample> ex = {{1, "first text", ""}, {0, "a", "b"}};
  data::write_classification_tsv((dir / "ok.tsv").string(), ex);
  const auto back = data::read_classification_tsv((dir / "ok.tsv").string());
  ASSERT_EQ(back.size(), 2u);
  EXPECT_EQ(back[0].label, 1);
  EXPECT_EQ(back[0].text_a, "first text");
  EXPECT_EQ(back[1].text_b, "b");
  std::ofstream(dir / "bad.tsv") << "1\tfine\nx\tbad label\n";
  try {
    data::read_classification_tsv((dir / "bad.tsv").string());
    FAIL();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("bad.tsv:2"), std::string::npos) << e.what();
  }
}

TEST(Classification, SentenceOrderPairsAreConsecutiveSentencesInBothOrders) {
  const auto ex =
      data::sentence_order_examples({(data_set().root / "text/train").string()}, 200, 7);
  ASSERT_EQ(ex.size(), 200u);
  int64_t ordered = 0;
  for (const auto& e : ex) {
    // The corpus's second sentence of each line starts with "Then".
    EXPECT_EQ(e.label == 1, e.text_b.rfind("Then ", 0) == 0) << e.text_a << " | " << e.text_b;
    ordered += e.label;
  }
  EXPECT_GT(ordered, 60);
  EXPECT_LT(ordered, 140);
  // Deterministic in the seed.
  const auto again =
      data::sentence_order_examples({(data_set().root / "text/train").string()}, 200, 7);
  for (size_t i = 0; i < ex.size(); ++i) EXPECT_EQ(ex[i].text_a, again[i].text_a);
}

TEST(Classification, WordOrderNegativesArePermutationsOfTheSentence) {
  const std::string dir = (data_set().root / "text/train").string();
  const auto ex = data::word_order_examples({dir}, 200, 3);
  ASSERT_EQ(ex.size(), 200u);
  int64_t originals = 0;
  for (const auto& e : ex) {
    EXPECT_EQ(e.text_b, "");
    EXPECT_EQ(e.text_a.back(), '.') << e.text_a;  // the end mark stays last
    std::istringstream in(e.text_a);
    std::vector<std::string> words;
    for (std::string w; in >> w;) words.push_back(w);
    if (e.label == 1) {
      ++originals;
      EXPECT_TRUE(std::isupper(static_cast<unsigned char>(e.text_a[0]))) << e.text_a;
    }
    EXPECT_GE(words.size(), 4u);
  }
  EXPECT_GT(originals, 60);
  EXPECT_LT(originals, 140);
  // A negative holds the same words as the sentence it came from, in another order; the
  // sentence-order task walks the same pairs, so its example i holds sentence i.
  const auto pairs = data::sentence_order_examples({dir}, 200, 3);
  auto words_of = [](std::string text) {
    text.pop_back();  // the end mark
    std::istringstream in(text);
    std::vector<std::string> w;
    for (std::string x; in >> x;) w.push_back(x);
    return w;
  };
  int64_t checked = 0;
  for (size_t i = 0; i < ex.size(); ++i) {
    const std::string original = pairs[i].label == 1 ? pairs[i].text_a : pairs[i].text_b;
    if (ex[i].label == 1) {
      EXPECT_EQ(ex[i].text_a, original);
      continue;
    }
    const auto shuffled = words_of(ex[i].text_a), plain = words_of(original);
    EXPECT_NE(shuffled, plain) << original;
    EXPECT_TRUE(std::is_permutation(shuffled.begin(), shuffled.end(), plain.begin(), plain.end()))
        << ex[i].text_a << " | " << original;
    ++checked;
  }
  EXPECT_GT(checked, 50);
}

TEST(Classification, SourceTaskLabelsSentencesByTheirDocumentsSourceInBalancedRounds) {
  const fs::path dir = data_set().root / "sources";
  fs::create_directories(dir);
  std::ofstream(dir / "alpha__one.txt")
      << "The cat sat on the mat today. The dog ran to the door.\n";
  std::ofstream(dir / "alpha__two.txt")
      << "A bird looked at the river. The fish slept by the tree.\n";
  std::ofstream(dir / "beta__one.txt")
      << "Kernel modules load at boot time. Drivers register their devices early.\n";
  const auto names = data::source_names({dir.string()});
  ASSERT_EQ(names, (std::vector<std::string>{"alpha", "beta"}));
  const auto ex = data::source_examples({dir.string()}, names, 10);
  // alpha has two sentences to offer, beta one: rounds alternate while both have some.
  ASSERT_EQ(ex.size(), 3u);
  EXPECT_EQ(ex[0].label, 0);
  EXPECT_EQ(ex[0].text_a, "The cat sat on the mat today.");
  EXPECT_EQ(ex[1].label, 1);
  EXPECT_EQ(ex[1].text_a, "Kernel modules load at boot time.");
  EXPECT_EQ(ex[2].label, 0);
  EXPECT_EQ(ex[2].text_a, "A bird looked at the river.");
  // A source outside the label set is an error naming it.
  try {
    data::source_examples({dir.string()}, {"alpha"}, 10);
    FAIL();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("'beta'"), std::string::npos) << e.what();
  }
}

TEST(Classification, EncodingIsClsTextSepTextSepThenPadding) {
  const auto tok = data::load_tokenizer(data_set().options("bert", "x").tokenizer);
  const auto& sp = tok->special();
  int64_t valid = 0;
  const auto ids = data::encode_classification(*tok, {0, "the cat", "a dog"}, 24, &valid);
  ASSERT_EQ(ids.size(), 24u);
  EXPECT_EQ(ids[0], sp.cls);
  EXPECT_EQ(ids[size_t(valid - 1)], sp.sep);
  EXPECT_EQ(std::count(ids.begin(), ids.end(), sp.sep), 2);
  for (size_t i = size_t(valid); i < ids.size(); ++i) EXPECT_EQ(ids[i], sp.pad);
  // Truncation keeps both separators.
  const auto cut = data::encode_classification(
      *tok, {0, "the farmer walked past the red house", "a child ran to the bridge"}, 8, &valid);
  EXPECT_EQ(valid, 8);
  EXPECT_EQ(std::count(cut.begin(), cut.end(), sp.sep), 2);
}

}  // namespace
}  // namespace strata::train
