#include "launch/option_checks.h"

#include <cmath>
#include <filesystem>
#include <sstream>

#include "core/device_select.h"
#include "core/error.h"
#include "core/text.h"
#include "launch/train_options.h"
#include "models/decoder_presets.h"
#include "models/precision.h"
#include "train/trainer.h"

namespace strata::launch {

namespace fs = std::filesystem;

namespace {

// ---- rules --------------------------------------------------------------------------------------

std::string num(double v) {
  std::ostringstream os;
  os.precision(15);
  os << v;
  return os.str();
}

// A bound on numbers. `ok` compares a finite value with the bound; NaN and infinities never pass.
OptionRule bound(double b, bool (*ok)(double, double), const char* words, const char* fix_words,
                 std::vector<std::string> refused) {
  refused.push_back("nan");
  return {[=](const std::string& key, const std::string&, std::optional<double> n,
              const Config&) -> std::optional<Refusal> {
            if (!n || (std::isfinite(*n) && ok(*n, b))) return std::nullopt;
            return Refusal{std::string("it must be ") + words + " " + num(b),
                           "set --" + key + " to " + fix_words + " " + num(b)};
          },
          std::move(refused)};
}

OptionRule at_least(double lo) {
  return bound(lo, [](double v, double b) { return v >= b; }, "at least", "a value of at least",
               {num(lo - 1)});
}
OptionRule above(double lo) {
  return bound(lo, [](double v, double b) { return v > b; }, "above", "a value above",
               {num(lo), num(lo - 1)});
}
OptionRule at_most(double hi) {
  return bound(hi, [](double v, double b) { return v <= b; }, "at most", "a value of at most",
               {num(hi + 1)});
}
OptionRule below(double hi) {
  return bound(hi, [](double v, double b) { return v < b; }, "below", "a value below",
               {num(hi), num(hi + 1)});
}

// At most the value of option `other` (the final LR and the peak).
OptionRule not_above(std::string other) {
  return {[other](const std::string& key, const std::string&, std::optional<double> n,
                  const Config& cfg) -> std::optional<Refusal> {
            const std::optional<double> limit = cfg.number(other);
            if (!n || !limit || *n <= *limit) return std::nullopt;
            return Refusal{"it must not exceed --" + other + " (" + num(*limit) + ")",
                           "set --" + key + " to at most " + num(*limit) + ", or raise --" + other};
          },
          {"1e9"}};
}

// Whatever an unsigned option parses: the parser itself refuses a negative text
// (launch/config.cpp), which would otherwise wrap around to a huge value.
OptionRule unsigned_integer() {
  return {[](const std::string&, const std::string&, std::optional<double>, const Config&) {
            return std::optional<Refusal>();
          },
          {"-1"}};
}

OptionRule one_of(std::vector<std::string> names) {
  return {[names](const std::string& key, const std::string& text, std::optional<double>,
                  const Config&) -> std::optional<Refusal> {
            for (const std::string& n : names)
              if (n == text) return std::nullopt;
            std::string list;
            for (const std::string& n : names)
              list += (list.empty() ? "" : ", ") + (n.empty() ? std::string("(empty)") : n);
            const std::string hint = nearest(text, names);
            return Refusal{"unknown value '" + text + "'; valid: " + list,
                           (hint.empty() ? std::string() : "did you mean '" + hint + "'? ") +
                               "set --" + key + " to one of those"};
          },
          {"bogus"}};
}

template <class E>
OptionRule one_of(const OptionNames<E>& names) {
  std::vector<std::string> list;
  for (const auto& [name, value] : names) list.push_back(name);
  return one_of(std::move(list));
}

// A path option. `must_exist`: a missing path is refused too (otherwise only one of the wrong
// kind is, e.g. a directory where a file will be written); an empty value always passes (the
// option's default then applies). Lists are checked element by element.
enum class PathKind { File, Directory, Any };
OptionRule path(PathKind kind, bool must_exist, std::string what) {
  std::vector<std::string> refused;
  if (kind == PathKind::File) refused.push_back("/");
  if (kind == PathKind::Directory) refused.push_back("/etc/passwd");
  if (must_exist) refused.push_back("/nonexistent/strata-walk");
  return {[=](const std::string& key, const std::string& text, std::optional<double>,
              const Config&) -> std::optional<Refusal> {
            std::istringstream lines(text);
            for (std::string p; std::getline(lines, p);) {
              if (p.empty()) continue;
              std::error_code ec;
              const fs::file_status st = fs::status(p, ec);
              if (!fs::exists(st)) {
                if (!must_exist) continue;
                return Refusal{"'" + p + "' does not exist; it must be " + what,
                               "check the path given to --" + key};
              }
              const bool dir = fs::is_directory(st);
              if (kind == PathKind::File && dir)
                return Refusal{"'" + p + "' is a directory; it must be " + what,
                               "pass a file to --" + key};
              if (kind == PathKind::Directory && !dir)
                return Refusal{"'" + p + "' is not a directory; it must be " + what,
                               "pass a directory to --" + key};
            }
            return std::nullopt;
          },
          std::move(refused)};
}

OptionRule custom(std::function<std::optional<Refusal>(const std::string& text)> fn,
                  std::vector<std::string> refused) {
  return {[fn = std::move(fn)](const std::string&, const std::string& text, std::optional<double>,
                               const Config&) { return fn(text); },
          std::move(refused)};
}

using Rules = std::vector<OptionRule>;

// ---- the commands -------------------------------------------------------------------------------

std::vector<std::string> all_presets() {
  std::vector<std::string> out{""};
  for (const auto& names :
       {models::decoder_preset_names(), models::bert_preset_names(), models::t5_preset_names()})
    out.insert(out.end(), names.begin(), names.end());
  return out;
}

// The model.* keys of the three configs, when set.
void add_model_rules(CommandChecks& c) {
  for (const char* key :
       {"model.d_model", "model.n_layers", "model.n_heads", "model.d_ff", "model.d_kv",
        "model.relative_buckets", "model.relative_max_distance", "model.vocab"})
    c.rules[key] = {at_least(1)};
  // max_seq 0: the decoder's default, data.seq_len.
  for (const char* key : {"model.n_kv_heads", "model.n_decoder_layers", "model.max_seq"})
    c.rules[key] = {at_least(0)};
  for (const char* key : {"model.rope_base", "model.norm_eps", "model.init_std"})
    c.rules[key] = {above(0)};
  c.rules["model.dropout"] = {at_least(0), below(1)};
  c.rules["model.type"] = {one_of(std::vector<std::string>{"decoder", "bert", "t5"})};
  c.rules["model.preset"] = {one_of(all_presets())};
  c.rules["model.precision"] = {one_of(models::Precision::names())};
  c.free["model.tie_embeddings"] = "a bool";
  c.free["model.share_position_bias"] = "a bool";
}

// The model.* options given explicitly (the preset's values stand for the others).
std::vector<std::string> model_keys_set(const Config& cfg) {
  std::vector<std::string> out;
  for (const char* key :
       {"model.vocab", "model.d_model", "model.n_layers", "model.n_decoder_layers", "model.n_heads",
        "model.n_kv_heads", "model.d_kv", "model.d_ff", "model.max_seq", "model.rope_base",
        "model.norm_eps", "model.init_std", "model.dropout", "model.relative_buckets",
        "model.relative_max_distance"})
    if (cfg.has(key)) out.push_back(key);
  return out;
}

// The model the options describe must be one the model code accepts (head counts dividing the
// width and the like): checked here with a stand-in vocabulary, before data is prepared.
void check_model_shape(const Config& cfg) {
  const train::ModelSpec m = model_spec(cfg);
  const int64_t vocab = int64_t(1) << 20;  // the tokenizer's, later; any size fits the checks
  const int64_t seq_len = int64_t(cfg.number("data.seq_len").value_or(0));
  try {
    if (m.type == "decoder") {
      models::DecoderConfig c = m.decoder;
      if (c.vocab <= 0) c.vocab = vocab;
      if (c.max_seq == 0) c.max_seq = seq_len;  // as the decoder task does
      c.validate();
    } else if (m.type == "bert") {
      models::BertConfig c = m.bert;
      if (c.vocab <= 0) c.vocab = vocab;
      c.validate();
      STRATA_CHECK(seq_len <= c.max_seq, "data.seq_len ", seq_len,
                   " exceeds the BERT position table (model.max_seq ", c.max_seq, ")");
    } else {
      models::T5Config c = m.t5;
      if (c.vocab <= 0) c.vocab = vocab;
      c.validate();
    }
  } catch (const Error& e) {
    std::string set;
    for (const std::string& key : model_keys_set(cfg))
      set += (set.empty() ? "" : ", ") + key + " = " + cfg.text(key).value_or("");
    const std::string preset = cfg.text("model.preset").value_or("");
    STRATA_FAIL("the model options (", set.empty() ? std::string("none set") : set,
                ", over preset ", preset.empty() ? m.type + "-small" : preset,
                ", data.seq_len = ", seq_len, ") do not give a valid model: ", e.what(),
                "; change the options it names");
  }
}

CommandChecks train_checks() {
  CommandChecks c;
  add_model_rules(c);
  auto& r = c.rules;
  r["run.dir"] = {path(PathKind::Directory, false, "a run directory")};
  r["run.resume"] = {custom(
      [](const std::string& v) -> std::optional<Refusal> {
        if (v == "auto" || v == "none" || v.empty() || fs::is_directory(v)) return std::nullopt;
        return Refusal{"it must be auto, none or a checkpoint directory, and '" + v + "' " +
                           (fs::exists(v) ? "is not a directory" : "does not exist"),
                       "pass --run.resume auto (the newest good checkpoint in run.dir), none, or "
                       "a step_ directory"};
      },
      {"/nonexistent/strata-walk", "/etc/passwd"})};
  r["run.seed"] = {unsigned_integer()};
  r["run.threads"] = {at_least(0)};
  r["run.device"] = {custom(
      [](const std::string& v) -> std::optional<Refusal> {
        try {
          resolve_device(v, "run.device");
        } catch (const Error& e) {
          return Refusal{e.what(), "pass --run.device cpu, cuda or cuda:N"};
        }
        return std::nullopt;
      },
      {"tpu"})};
  r["data.corpus"] = {path(PathKind::Directory, false, "a corpus directory")};
  r["data.prepare"] = {one_of(std::vector<std::string>{"auto", "never"})};
  r["data.tokenizer_vocab"] = {at_least(16)};
  r["data.tokenizer_style"] = {one_of(std::vector<std::string>{"", "t5", "bert"})};
  r["data.tokenizer_sentences"] = {at_least(1)};
  r["data.tokenizer"] = {path(PathKind::File, false, "a tokenizer file")};
  r["data.train"] = {path(PathKind::Directory, false, "a directory of prepared shards")};
  r["data.valid"] = {path(PathKind::Directory, false, "a directory of prepared shards")};
  r["data.micro_batch"] = {at_least(1)};
  r["data.grad_accum"] = {at_least(1)};
  r["data.seq_len"] = {at_least(2)};
  r["objective.mlm_probability"] = {above(0), at_most(1)};
  r["objective.noise_density"] = {above(0), below(1)};
  r["objective.mean_span"] = {at_least(1)};
  r["optim.name"] = {one_of(train::optimizer_names())};
  r["optim.lr"] = {above(0)};
  r["optim.weight_decay"] = {at_least(0)};
  r["optim.beta1"] = {at_least(0), below(1)};
  r["optim.beta2"] = {at_least(0), below(1)};
  r["optim.eps"] = {above(0)};
  r["optim.clip"] = {at_least(0)};
  r["optim.schedule"] = {one_of(std::vector<std::string>{"cosine", "legacy", "budget-one-cycle",
                                                         "cosine-budget", "constant"})};
  r["optim.warmup_steps"] = {at_least(0)};
  r["optim.final_lr"] = {at_least(0), not_above("optim.lr")};
  r["optim.rho"] = {above(0)};
  r["optim.hessian_every"] = {at_least(1)};
  r["optim.hessian_batch_tokens"] = {at_least(0)};  // 0: the tokens of one step
  // Bools; which optimizer reads them is checked by the trainer (train/optimizer_factory.cpp).
  c.free["optim.rms_scale"] = "a bool";
  c.free["optim.relative_step"] = "a bool";
  c.free["optim.scale_parameter"] = "a bool";
  c.free["optim.warmup_init"] = "a bool";
  c.free["optim.adafactor_momentum"] = "a bool";
  r["budget.unit"] = {one_of(train::budget_unit_names())};
  r["budget.amount"] = {above(0)};
  r["budget.rst_table"] = {path(PathKind::File, true, "a table written by `strata calibrate`")};
  r["log.every"] = {at_least(1)};
  r["log.eval_every"] = {at_least(0)};
  r["log.eval_batches"] = {at_least(1)};
  r["log.save_every"] = {at_least(0)};
  r["log.keep_last"] = {at_least(0)};  // 0 keeps every checkpoint
  r["log.peak_gflops"] = {at_least(0)};
  r["log.sample_tokens"] = {at_least(0)};
  r["log.stop_after"] = {at_least(0)};
  r["parallel.dp"] = {at_least(0)};
  r["parallel.tp"] = {at_least(1)};
  r["parallel.pp"] = {at_least(1)};
  r["parallel.schedule"] = {one_of(parallel::schedule_kind_names())};
  r["parallel.micro_batches"] = {at_least(0)};
  r["parallel.timeout"] = {above(0)};
  c.free["log.sample_prompt"] = "any text";
  c.whole = check_model_shape;
  return c;
}

// `strata calibrate` takes the train options (the model it measures) and its own.
CommandChecks calibrate_checks() {
  CommandChecks c = train_checks();
  c.rules["calibrate.out"] = {path(PathKind::File, false, "the table file to write")};
  c.rules["calibrate.reps"] = {at_least(1)};
  c.free["calibrate.all_depths"] = "a bool";
  return c;
}

CommandChecks finetune_checks() {
  CommandChecks c;
  auto& r = c.rules;
  r["finetune.checkpoint"] = {path(PathKind::Directory, true, "a BERT checkpoint directory")};
  r["finetune.tokenizer"] = {path(PathKind::File, true, "a tokenizer file")};
  r["finetune.preset"] = {one_of(models::bert_preset_names())};
  r["finetune.seq_len"] = {at_least(2)};
  r["finetune.batch"] = {at_least(1)};
  r["finetune.epochs"] = {at_least(1)};
  r["finetune.warmup_fraction"] = {at_least(0), below(1)};
  r["finetune.dropout"] = {at_least(0), below(1)};
  r["task.train"] = {path(PathKind::File, false, "a TSV file")};
  r["task.valid"] = {path(PathKind::File, false, "a TSV file")};
  r["task.build"] = {one_of(std::vector<std::string>{"auto", "never"})};
  r["task.kind"] = {one_of(std::vector<std::string>{"source", "word-order", "sentence-order"})};
  r["task.corpus"] = {path(PathKind::Directory, false, "a corpus directory")};
  r["task.train_examples"] = {at_least(1)};
  r["task.valid_examples"] = {at_least(1)};
  r["optim.lr"] = {above(0)};
  r["optim.beta1"] = {at_least(0), below(1)};
  r["optim.beta2"] = {at_least(0), below(1)};
  r["optim.eps"] = {above(0)};
  r["optim.weight_decay"] = {at_least(0)};
  r["run.dir"] = {path(PathKind::Directory, false, "a run directory")};
  r["run.seed"] = {unsigned_integer()};
  r["run.threads"] = {at_least(0)};
  r["log.every"] = {at_least(0)};  // 0: no progress lines (train/finetune.cpp)
  return c;
}

CommandChecks generate_checks() {
  CommandChecks c;
  auto& r = c.rules;
  r["checkpoint"] = {path(PathKind::Directory, true, "a checkpoint directory (step_...)")};
  r["tokens"] = {at_least(1)};  // the model's context is checked once it is loaded
  r["temperature"] = {above(0)};
  r["top_k"] = {at_least(0)};
  r["top_p"] = {above(0), at_most(1)};
  r["seed"] = {unsigned_integer()};
  c.free["prompt"] = "any text";
  c.free["greedy"] = "a bool";
  return c;
}

CommandChecks prepare_checks() {
  CommandChecks c;
  auto& r = c.rules;
  r["input"] = {path(PathKind::Any, true, "a text or .jsonl file or a directory of them")};
  r["tokenizer"] = {path(PathKind::File, true, "a tokenizer file")};
  r["out"] = {path(PathKind::Directory, false, "the output directory")};
  r["threads"] = {at_least(0)};
  r["shard_tokens"] = {at_least(1)};
  r["id_bytes"] = {one_of(std::vector<std::string>{"0", "2", "4"})};
  c.free["quiet"] = "a bool";
  return c;
}

CommandChecks tokenizer_checks() {
  CommandChecks c;
  auto& r = c.rules;
  r["action"] = {one_of(std::vector<std::string>{"train", "info", "encode"})};
  r["input"] = {path(PathKind::Any, true, "a text or .jsonl file or a directory of them")};
  r["kind"] = {one_of(std::vector<std::string>{"unigram", "bpe", "bytes"})};
  r["style"] = {one_of(std::vector<std::string>{"", "t5", "bert"})};
  r["vocab"] = {at_least(16)};
  r["sentinels"] = {at_least(0)};
  r["max_sentences"] = {at_least(1)};
  r["character_coverage"] = {above(0), at_most(1)};
  r["threads"] = {at_least(0)};
  r["out"] = {path(PathKind::File, false, "the tokenizer file to write")};
  r["model"] = {path(PathKind::File, true, "a tokenizer file")};
  c.free["text"] = "any text";
  return c;
}

CommandChecks inspect_checks() {
  CommandChecks c;
  c.rules["dir"] = {path(PathKind::Directory, true, "a checkpoint or run directory")};
  c.rules["compare"] = {path(PathKind::Directory, true, "a checkpoint directory")};
  return c;
}

bool shared_option(const std::string& name) {
  return name == "config" || name == "help" || name == "dump-config";
}

}  // namespace

const CommandChecks& command_checks(std::string_view name) {
  static const std::map<std::string, CommandChecks, std::less<>> all{
      {"train", train_checks()},         {"finetune", finetune_checks()},
      {"generate", generate_checks()},   {"prepare", prepare_checks()},
      {"tokenizer", tokenizer_checks()}, {"inspect", inspect_checks()},
      {"calibrate", calibrate_checks()},
  };
  static const CommandChecks none;
  const auto it = all.find(name);
  return it == all.end() ? none : it->second;
}

void check_options(std::string_view command, const Config& cfg,
                   const po::options_description& declared) {
  const CommandChecks& checks = command_checks(command);
  for (const auto& o : declared.options()) {
    const std::string& key = o->long_name();
    const auto rules = checks.rules.find(key);
    if (rules == checks.rules.end()) continue;
    const std::optional<std::string> text = cfg.text(key);
    if (!text) continue;
    const std::optional<double> number = cfg.number(key);
    for (const OptionRule& rule : rules->second) {
      if (const std::optional<Refusal> r = rule.check(key, *text, number, cfg)) {
        const std::string shown = text->find('\n') == std::string::npos ? *text : "'" + *text + "'";
        STRATA_FAIL("strata ", command, ": --", key, " ", shown.empty() ? "''" : shown,
                    " is invalid: ", r->problem, " (", o->description(), "); ", r->fix);
      }
    }
  }
  if (checks.whole) {
    try {
      checks.whole(cfg);
    } catch (const Error& e) {
      STRATA_FAIL("strata ", command, ": ", e.what());
    }
  }
}

std::vector<std::string> unchecked_options(std::string_view command,
                                           const po::options_description& declared) {
  const CommandChecks& checks = command_checks(command);
  std::vector<std::string> out;
  for (const auto& o : declared.options()) {
    const std::string& key = o->long_name();
    if (!shared_option(key) && !checks.rules.count(key) && !checks.free.count(key))
      out.push_back(key);
  }
  return out;
}

}  // namespace strata::launch
