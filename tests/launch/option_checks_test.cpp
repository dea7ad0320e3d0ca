// Options validated at the edge (launch/option_checks.h, issue 21): every option every command
// declares has rules or is listed as free; the values issue 21 found accepted are errors that
// name the option, the value and the fix; and a walk over every declared option with values out
// of range (the rules' own and generic ones: negative, zero, huge, not a number, paths of the
// wrong kind, missing paths) gets either acceptance or an error naming the option, never a crash.
// Parsing and checking only: nothing here trains.
#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <iostream>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "core/error.h"
#include "launch/commands.h"
#include "launch/option_checks.h"

namespace strata::launch {
namespace {

namespace fs = std::filesystem;

// Every command of `strata`, as launch/main.cpp lists them.
std::vector<Command> commands() {
  return {make_train_command(),    make_finetune_command(),  make_generate_command(),
          make_prepare_command(),  make_tokenizer_command(), make_inspect_command(),
          make_calibrate_command()};
}

std::vector<std::string> declared_names(const Command& c) {
  po::options_description o;
  po::positional_options_description p;
  c.declare(o, p);
  std::vector<std::string> out;
  for (const auto& d : o.options()) out.push_back(d->long_name());
  return out;
}

struct Outcome {
  bool error = false;
  std::string message;
};

// Parses and checks `args` as `command` would; any exception but strata::Error escapes and
// fails the test.
Outcome parse(const Command& command, const std::vector<std::string>& args) {
  po::options_description options;
  std::ostringstream out;
  try {
    parse_command(command, args, options, out);
  } catch (const Error& e) {
    return {true, e.what()};
  }
  return {};
}

// A scratch directory with a file in it, for the commands whose required options are paths.
class Scratch {
 public:
  Scratch()
      : dir_(fs::temp_directory_path() / ("strata_option_checks_" + std::to_string(::getpid()))) {
    fs::create_directories(dir_);
    std::ofstream(dir_ / "file.txt") << "text\n";
  }
  ~Scratch() { fs::remove_all(dir_); }
  std::string dir() const { return dir_.string(); }
  std::string file() const { return (dir_ / "file.txt").string(); }
  std::string write(const std::string& name, const std::string& text) const {
    std::ofstream(dir_ / name) << text;
    return (dir_ / name).string();
  }

 private:
  fs::path dir_;
};

// Arguments with which each command parses cleanly (its required options set).
std::vector<std::string> base_args(const std::string& command, const Scratch& s) {
  if (command == "generate") return {"--checkpoint", s.dir(), "--prompt", "x"};
  if (command == "prepare")
    return {"--input", s.file(), "--tokenizer", s.file(), "--out", s.dir() + "/out"};
  if (command == "tokenizer") return {"--action", "train"};
  if (command == "inspect") return {"--dir", s.dir()};
  return {};
}

// `base` with --key set to `value` (replacing the base's own value for that key).
std::vector<std::string> with(std::vector<std::string> base, const std::string& key,
                              const std::string& value) {
  for (size_t i = 0; i + 1 < base.size(); ++i) {
    if (base[i] == "--" + key) {
      base[i + 1] = value;
      return base;
    }
  }
  base.push_back("--" + key);
  base.push_back(value);
  return base;
}

TEST(OptionChecks, EveryDeclaredOptionHasRulesOrIsFree) {
  size_t options = 0;
  for (const Command& c : commands()) {
    po::options_description o;
    po::positional_options_description p;
    c.declare(o, p);
    EXPECT_EQ(unchecked_options(c.name, o), std::vector<std::string>{})
        << "strata " << c.name
        << ": options without rules; add them to launch/option_checks.cpp (or to its free list, "
           "saying why any value does)";
    // A rule for an option the command no longer declares is a rename that lost its check.
    const std::vector<std::string> names = declared_names(c);
    const std::set<std::string> have(names.begin(), names.end());
    const CommandChecks& checks = command_checks(c.name);
    for (const auto& [key, rules] : checks.rules)
      EXPECT_TRUE(have.count(key)) << "strata " << c.name << ": a rule for undeclared " << key;
    for (const auto& [key, why] : checks.free)
      EXPECT_TRUE(have.count(key)) << "strata " << c.name << ": undeclared free option " << key;
    options += names.size();
  }
  EXPECT_GT(options, 100u);
}

// The values issue 21 found accepted (or crashing, for log.every 0) are errors naming the
// option, the value and the fix.
TEST(OptionChecks, TheIssuesBadValuesAreErrors) {
  const Scratch s;
  const Command train = make_train_command(), generate = make_generate_command();
  struct Case {
    const Command* command;
    std::vector<std::string> args;
    std::string want;
  };
  const std::vector<Case> cases{
      {&train, {"--run.threads", "-1"}, "--run.threads -1 is invalid: it must be at least 0"},
      {&train, {"--log.save_every", "-1"}, "--log.save_every -1 is invalid: it must be at least 0"},
      {&train, {"--log.eval_every", "-5"}, "--log.eval_every -5 is invalid: it must be at least 0"},
      {&train, {"--optim.clip", "-1"}, "--optim.clip -1 is invalid: it must be at least 0"},
      {&train, {"--run.seed", "-1"}, "--run.seed -1 is invalid: it must be a non-negative integer"},
      {&train,
       {"--optim.lr", "0.001", "--optim.final_lr", "0.01"},
       "--optim.final_lr 0.01 is invalid: it must not exceed --optim.lr (0.001)"},
      {&train,
       {"--config", s.write("mlm.ini", "[objective]\nmlm_probability = 0\n")},
       "--objective.mlm_probability 0 is invalid: it must be above 0"},
      {&train,
       {"--config", s.write("lr.ini", "[optim]\nlr = 1e-4\nfinal_lr = 2e-4\n")},
       "--optim.final_lr 0.0002 is invalid: it must not exceed --optim.lr (0.0001)"},
      {&train, {"--config", s.dir()}, "config file '" + s.dir() + "' is a directory"},
      {&train, {"--log.every", "0"}, "--log.every 0 is invalid: it must be at least 1"},
      {&generate,
       {"--checkpoint", s.dir(), "--prompt", "x", "--top_k", "-3"},
       "--top_k -3 is invalid: it must be at least 0"},
  };
  for (const Case& c : cases) {
    const Outcome o = parse(*c.command, c.args);
    ASSERT_TRUE(o.error) << c.want << ": accepted";
    EXPECT_NE(o.message.find("strata " + c.command->name + ": "), std::string::npos) << o.message;
    EXPECT_NE(o.message.find(c.want), std::string::npos) << o.message;
    // The fix: what to set, or which file to pass.
    EXPECT_TRUE(o.message.find("; set --") != std::string::npos ||
                o.message.find("pass an INI file") != std::string::npos)
        << o.message;
  }
  // The boundary values themselves are fine.
  EXPECT_FALSE(parse(train, {"--run.threads", "0", "--log.every", "1", "--optim.clip", "0",
                             "--run.seed", "0", "--optim.final_lr", "0.002"})
                   .error);
}

// The model options together must make a model: caught here, before data is prepared.
TEST(OptionChecks, TheModelsShapeIsCheckedBeforeAnyWork) {
  const Outcome o = parse(make_train_command(), {"--model.d_model", "64", "--model.n_heads", "3"});
  ASSERT_TRUE(o.error);
  EXPECT_NE(o.message.find("model.d_model = 64, model.n_heads = 3"), std::string::npos)
      << o.message;
  EXPECT_NE(o.message.find("n_heads 3 must be positive and divide d_model 64"), std::string::npos)
      << o.message;
  const Outcome bert = parse(make_train_command(), {"--model.type", "bert", "--model.preset",
                                                    "bert-tiny", "--data.seq_len", "100000"});
  ASSERT_TRUE(bert.error);
  EXPECT_NE(bert.message.find("exceeds the BERT position table"), std::string::npos)
      << bert.message;
}

// Every shipped config passes (the finetune ones name no checkpoint: the control run).
TEST(OptionChecks, ShippedConfigsPass) {
  for (const auto& e : fs::directory_iterator(fs::path(STRATA_FIXTURE_DIR) / "../../configs")) {
    const std::string name = e.path().filename().string();
    const Command c =
        name.rfind("finetune", 0) == 0 ? make_finetune_command() : make_train_command();
    const Outcome o = parse(c, {"--config", e.path().string()});
    EXPECT_FALSE(o.error) << name << ": " << o.message;
  }
}

// The walk: every declared option of every command, with the values its rules refuse (each an
// error naming the option) and generic probes (each accepted, or an error naming the option).
TEST(OptionChecks, WalkEveryOptionWithBadValues) {
  const Scratch s;
  const std::vector<std::string> probes{
      "-1",    "0", "1", "9223372036854775807",     "1e300", "-1e300", "nan",
      "bogus", "",  "/", "/nonexistent/strata-walk"};
  size_t options = 0, values = 0, refused = 0, errors = 0;
  for (const Command& c : commands()) {
    const std::vector<std::string> base = base_args(c.name, s);
    ASSERT_FALSE(parse(c, base).error) << c.name << ": " << parse(c, base).message;
    const CommandChecks& checks = command_checks(c.name);
    for (const std::string& key : declared_names(c)) {
      if (key == "config" || key == "help" || key == "dump-config") continue;
      ++options;
      std::set<std::string> must_refuse;
      if (const auto it = checks.rules.find(key); it != checks.rules.end())
        for (const OptionRule& rule : it->second)
          must_refuse.insert(rule.refused.begin(), rule.refused.end());
      std::set<std::string> tries(probes.begin(), probes.end());
      tries.insert(must_refuse.begin(), must_refuse.end());
      for (const std::string& value : tries) {
        ++values;
        const Outcome o = parse(c, with(base, key, value));
        const std::string what = "strata " + c.name + " --" + key + " '" + value + "'";
        if (must_refuse.count(value)) {
          ++refused;
          EXPECT_TRUE(o.error) << what << ": accepted, but its rules refuse it";
        }
        if (!o.error) continue;
        ++errors;
        EXPECT_NE(o.message.find(key), std::string::npos)
            << what << ": the error does not name the option: " << o.message;
      }
    }
  }
  std::cout << "walked " << options << " options with " << values << " values: " << errors
            << " errors, each naming its option (" << refused << " refused by the rules)\n";
  EXPECT_GT(refused, options);
}

}  // namespace
}  // namespace strata::launch
