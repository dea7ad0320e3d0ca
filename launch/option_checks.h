#pragma once
// Options validated at the edge (issue 21): after parsing and before any work, every value a
// command got is checked against its option's rules, and a bad one is an error (exit 2) that
// names the option, the value and the fix, e.g.
//   strata train: --log.every 0 is invalid: it must be at least 1 (steps between progress
//   lines); set --log.every to 1 or more
// The rules live in one table per command (option_checks.cpp), keyed by the option's name, so
// they stay out of the structs that declare the options (their visit_options). Every option a
// command declares has rules or is listed as free (any value its type parses is fine, e.g. a
// prompt), and tests/launch/option_checks_test.cpp holds each command to that, so a new option
// cannot skip validation: it fails the test until it gets rules or a reason to be free.
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "launch/config.h"

namespace strata::launch {

// Why a value is refused and how to fix it: "it must be at least 1" / "set --log.every to 1 or
// more".
struct Refusal {
  std::string problem, fix;
};

// One rule on one option's value. `check` gets the option's name, its value as text (a list:
// one element per line), its number (numeric options) and the whole configuration (for rules
// that compare options); it returns nullopt for a good value.
struct OptionRule {
  std::function<std::optional<Refusal>(const std::string& key, const std::string& text,
                                       std::optional<double> number, const Config& cfg)>
      check;
  // Values the rule refuses while the other options keep their defaults: the option walk
  // (tests/launch/option_checks_test.cpp) expects an error for each.
  std::vector<std::string> refused;
};

struct CommandChecks {
  std::map<std::string, std::vector<OptionRule>> rules;  // by option name
  std::map<std::string, std::string> free;               // option name -> why any value does
  // Checks across options that need them all (the model's shape for `strata train`); throws
  // strata::Error naming the options involved.
  std::function<void(const Config&)> whole;
};

// The checks of command `name` (train, finetune, generate, prepare, tokenizer, inspect); an
// empty set for another name.
const CommandChecks& command_checks(std::string_view name);

// Throws strata::Error "strata <command>: --<key> <value> is invalid: <problem> (<help>);
// <fix>" for the first declared option whose value breaks a rule, then runs the command's whole
// check. Options without a value (unset, no default) are not checked.
void check_options(std::string_view command, const Config& cfg,
                   const po::options_description& declared);

// The declared options of `command` that have neither rules nor a place among the free ones
// (--config, --help and --dump-config excepted): empty when every option is covered.
std::vector<std::string> unchecked_options(std::string_view command,
                                           const po::options_description& declared);

}  // namespace strata::launch
