// Every option of `strata train` and `strata finetune` is declared once, beside the struct it
// fills (visit_options, core/option_names.h). These tests hold the command line to the code:
// --dump-config prints every option the structs declare, with exactly the structs' defaults
// (reading the dump back as a config file gives a default-constructed struct, field by field).
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>
#include <string>

#include "launch/commands.h"
#include "launch/option_visitors.h"
#include "launch/train_options.h"
#include "train/finetune.h"

namespace strata::launch {
namespace {

// Each visited field as text, by option name; doubles to the last bit.
class FieldText {
 public:
  explicit FieldText(std::map<std::string, std::string>& out) : out_(out) {}
  template <class T>
  void operator()(const char* key, const T& field, const char*) {
    std::ostringstream os;
    os.precision(17);
    os << field;
    out_[key] = os.str();
  }
  template <class E>
  void operator()(const char* key, const E& field, const char*, const OptionNames<E>& names) {
    out_[key] = option_name(names, field);
  }

 private:
  std::map<std::string, std::string>& out_;
};

template <class S>
std::map<std::string, std::string> fields(S s) {
  std::map<std::string, std::string> out;
  FieldText v(out);
  s.visit_options(v);
  return out;
}

// Runs `command` with `args`; returns what it printed (for --dump-config) and the Config, if any.
std::optional<Config> parse(const Command& command, const std::vector<std::string>& args,
                            po::options_description& options, std::string* printed = nullptr) {
  std::ostringstream out;
  auto cfg = parse_command(command, args, options, out);
  if (printed != nullptr) *printed = out.str();
  return cfg;
}

// --dump-config with no other arguments, then that text read back as the only config file.
template <class S>
void expect_dump_is_the_defaults(const Command& command) {
  po::options_description dump_options;
  std::string dump;
  EXPECT_FALSE(parse(command, {"--dump-config"}, dump_options, &dump));
  const S defaults;
  const auto want = fields(defaults);
  ASSERT_FALSE(want.empty());
  // Every declared option is in the dump, under its section.
  for (const auto& [key, value] : want) {
    const std::string section = key.substr(0, key.find('.'));
    const std::string name = key.substr(key.find('.') + 1);
    const size_t at = dump.find("[" + section + "]");
    ASSERT_NE(at, std::string::npos) << "no [" << section << "] in the dump:\n" << dump;
    EXPECT_NE(dump.find("\n" + name + " =", at), std::string::npos) << key << " missing";
  }
  const auto file =
      std::filesystem::temp_directory_path() / ("strata_dump_" + command.name + ".ini");
  std::ofstream(file) << dump;
  po::options_description options;
  const auto cfg = parse(command, {"--config", file.string()}, options);
  ASSERT_TRUE(cfg);
  EXPECT_EQ(fields(read_options<S>(*cfg)), want);
  std::filesystem::remove(file);
}

TEST(Options, TrainDumpConfigPrintsTheDefaultsTheCodeUses) {
  expect_dump_is_the_defaults<train::TrainOptions>(make_train_command());
  expect_dump_is_the_defaults<DataPreparation>(make_train_command());
}

TEST(Options, FinetuneDumpConfigPrintsTheDefaultsTheCodeUses) {
  expect_dump_is_the_defaults<train::FinetuneOptions>(make_finetune_command());
}

// The values the two declarations of `strata train` used to disagree on (the command line's
// won, and are what README's default run documents).
TEST(Options, TrainDefaultsAreTheDocumentedRun) {
  const train::TrainOptions d;
  EXPECT_EQ(d.lr, 2e-3);
  EXPECT_EQ(d.warmup_steps, 30);
  EXPECT_EQ(d.log_every, 10);
  EXPECT_EQ(d.budget, 300);
  EXPECT_EQ(d.eval_every, 100);
  EXPECT_EQ(d.save_every, 100);
  EXPECT_EQ(d.sample_tokens, 48);
}

// A value given on the command line reaches its field; an enum's name turns into the enum, and
// a name it lacks is an error that names the option and the choices.
TEST(Options, ValuesAndEnumsAreReadAtTheEdge) {
  po::options_description options;
  const auto cfg = parse(make_train_command(),
                         {"--optim.lr", "0.5", "--optim.name", "adamwscale", "--budget.unit",
                          "tokens", "--parallel.schedule", "gpipe"},
                         options);
  ASSERT_TRUE(cfg);
  const auto o = read_options<train::TrainOptions>(*cfg);
  EXPECT_EQ(o.lr, 0.5);
  EXPECT_EQ(o.optimizer, train::OptimizerKind::AdamWScale);
  EXPECT_EQ(o.budget_unit, optim::ClockKind::tokens);
  EXPECT_EQ(o.parallel.schedule, parallel::ScheduleKind::GPipe);

  // Values are checked as they are parsed (launch/option_checks.h); a struct read from an
  // unchecked configuration still refuses a name its enum lacks.
  po::options_description bad_options;
  try {
    parse(make_train_command(), {"--budget.unit", "hours"}, bad_options);
    ADD_FAILURE() << "budget.unit hours was accepted";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("--budget.unit hours is invalid: unknown value 'hours'; "
                                         "valid: steps, tokens, seconds"),
              std::string::npos)
        << e.what();
  }
  po::options_description raw_options;
  declare_train_options(raw_options);
  po::variables_map raw;
  po::store(po::command_line_parser(std::vector<std::string>{"--budget.unit", "hours"})
                .options(raw_options)
                .run(),
            raw);
  try {
    read_options<train::TrainOptions>(Config(raw, &raw_options));
    ADD_FAILURE() << "budget.unit hours was read";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("budget.unit: unknown value 'hours'; valid: steps, "
                                         "tokens, seconds"),
              std::string::npos)
        << e.what();
  }
}

// Model keys: declared from the model configs' visit_options, without defaults (the preset's
// values stand), applied when set, and refused for a type whose config lacks them.
TEST(Options, ModelKeysOverrideThePresetOnlyWhenSet) {
  po::options_description options;
  const auto cfg =
      parse(make_train_command(),
            {"--model.type", "t5", "--model.preset", "t5-tiny", "--model.d_kv", "16"}, options);
  ASSERT_TRUE(cfg);
  const train::ModelSpec m = model_spec(*cfg);
  models::T5Config want = models::t5_preset("t5-tiny");
  EXPECT_EQ(m.t5.d_kv, 16);
  EXPECT_EQ(m.t5.d_model, want.d_model);
  EXPECT_EQ(m.t5.n_layers, want.n_layers);

  // Refused as the options are checked, before any work (launch/option_checks.h).
  po::options_description options2;
  try {
    parse(make_train_command(), {"--model.type", "t5", "--model.init_std", "0.1"}, options2);
    ADD_FAILURE() << "model.init_std was accepted for t5";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find(
                  "model.init_std does not apply to model.type t5 (only to: decoder, bert)"),
              std::string::npos)
        << e.what();
  }
}

}  // namespace
}  // namespace strata::launch
