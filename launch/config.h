#pragma once
// The `strata` command line: `strata <command> [--config FILE.ini]... [--section.key value]...`.
// Each command declares its options (name, default, help) in one place with Boost.Program_options;
// INI sections map to dotted names (`[model] d_model = 256` is `--model.d_model 256`). Later
// --config files override earlier ones and the command line overrides them all.
#include <boost/program_options.hpp>
#include <functional>
#include <iosfwd>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "core/text.h"

namespace strata::launch {

using strata::edit_distance;  // core/text.h: "did you mean" hints
using strata::nearest;

namespace po = boost::program_options;

// The effective configuration of one command run.
class Config {
 public:
  Config(po::variables_map vars, const po::options_description* options)
      : vars_(std::move(vars)), options_(options) {}
  template <class T>
  T get(const std::string& name) const {
    auto it = vars_.find(name);
    if (it == vars_.end() || it->second.empty()) return T{};
    return it->second.as<T>();
  }
  bool has(const std::string& name) const { return vars_.count(name) && !vars_[name].defaulted(); }
  // The value as --dump-config prints it (a list: one element per line); nullopt when the option
  // has no value (unset, without a default).
  std::optional<std::string> text(const std::string& name) const;
  // The value of a numeric option (integers and doubles); nullopt otherwise.
  std::optional<double> number(const std::string& name) const;
  // INI text that reproduces this configuration (what --dump-config prints).
  std::string dump() const;

 private:
  po::variables_map vars_;
  const po::options_description* options_;
};

struct Command {
  std::string name;
  std::string summary;
  std::string usage;  // e.g. "strata prepare --input FILES... --tokenizer MODEL --out DIR"
  // Adds the command's own options (the shared --config/--help/--dump-config come on top).
  std::function<void(po::options_description&, po::positional_options_description&)> declare;
  std::function<int(const Config&)> run;
};

// Parses a command's arguments (those after the command name). Returns nullopt when --help or
// --dump-config already answered (printed to `out`). Throws strata::Error for unknown or
// malformed options (naming the option and the nearest valid one) and for missing config files.
std::optional<Config> parse_command(const Command& command, const std::vector<std::string>& args,
                                    po::options_description& options, std::ostream& out);

// The whole program: dispatches argv to a command, prints errors, returns the exit status.
int run_main(std::span<const Command> commands, int argc, char** argv);

}  // namespace strata::launch
