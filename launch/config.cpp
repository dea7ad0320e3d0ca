#include "launch/config.h"

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <limits>
#include <map>
#include <optional>
#include <sstream>

#include <mpi.h>

#include "core/error.h"
#include "core/text.h"
#include "launch/option_checks.h"
#include "parallel/mpi_env.h"

namespace strata::launch {

namespace {

std::string value_text(const boost::any& v) {
  if (v.empty()) return "";
  std::ostringstream os;
  if (auto p = boost::any_cast<std::string>(&v))
    os << *p;
  else if (auto p = boost::any_cast<int>(&v))
    os << *p;
  else if (auto p = boost::any_cast<int64_t>(&v))
    os << *p;
  else if (auto p = boost::any_cast<uint64_t>(&v))
    os << *p;
  else if (auto p = boost::any_cast<double>(&v))
    os << *p;
  else if (auto p = boost::any_cast<bool>(&v))
    os << (*p ? "true" : "false");
  else if (auto p = boost::any_cast<std::vector<std::string>>(&v)) {
    // One "key = value" line per element: that is how an INI file spells a list.
    for (size_t i = 0; i < p->size(); ++i) os << (i ? "\n" : "") << (*p)[i];
  } else {
    os << "?";
  }
  return os.str();
}

std::vector<std::string> option_names(const po::options_description& options) {
  std::vector<std::string> names;
  for (const auto& o : options.options()) names.push_back(o->long_name());
  return names;
}

// Boost reads "-1" into an unsigned option as 2^64 - 1; a seed of -1 is a mistake to name.
void refuse_negative_unsigned(const po::parsed_options& parsed,
                              const po::options_description& options, const std::string& who) {
  for (const po::option& o : parsed.options) {
    const po::option_description* d = options.find_nothrow(o.string_key, false);
    if (d == nullptr || (!dynamic_cast<const po::typed_value<uint64_t>*>(d->semantic().get()) &&
                         !dynamic_cast<const po::typed_value<unsigned>*>(d->semantic().get())))
      continue;
    for (const std::string& v : o.value) {
      const size_t first = v.find_first_not_of(" \t");
      if (first == std::string::npos || v[first] != '-') continue;
      STRATA_FAIL(who, ": --", o.string_key, " ", v,
                  " is invalid: it must be a non-negative integer (", d->description(), "); set --",
                  o.string_key, " to a value from 0 to ", std::numeric_limits<uint64_t>::max());
    }
  }
}

std::string strip_dashes(std::string s) {
  while (!s.empty() && s[0] == '-') s.erase(0, 1);
  return s;
}

}  // namespace

std::optional<std::string> Config::text(const std::string& name) const {
  auto it = vars_.find(name);
  if (it == vars_.end() || it->second.empty()) return std::nullopt;
  return value_text(it->second.value());
}

std::optional<double> Config::number(const std::string& name) const {
  auto it = vars_.find(name);
  if (it == vars_.end() || it->second.empty()) return std::nullopt;
  const boost::any& v = it->second.value();
  if (auto p = boost::any_cast<int>(&v)) return double(*p);
  if (auto p = boost::any_cast<int64_t>(&v)) return double(*p);
  if (auto p = boost::any_cast<uint64_t>(&v)) return double(*p);
  if (auto p = boost::any_cast<double>(&v)) return *p;
  return std::nullopt;
}

std::string Config::dump() const {
  // Options without a dot come first, then one INI section per prefix.
  std::map<std::string, std::vector<std::pair<std::string, std::optional<std::string>>>> sections;
  for (const auto& o : options_->options()) {
    const std::string& name = o->long_name();
    if (name == "config" || name == "help" || name == "dump-config") continue;
    auto it = vars_.find(name);
    // nullopt: unset and without a default; "" is a value (an empty string default).
    std::optional<std::string> text;
    if (it != vars_.end() && !it->second.empty()) text = value_text(it->second.value());
    const size_t dot = name.rfind('.');
    if (dot == std::string::npos)
      sections[""].push_back({name, text});
    else
      sections[name.substr(0, dot)].push_back({name.substr(dot + 1), text});
  }
  std::ostringstream os;
  for (const auto& [section, entries] : sections) {
    if (!section.empty()) os << "\n[" << section << "]\n";
    for (const auto& [key, value] : entries) {
      if (!value)
        os << "# " << key << " =\n";  // unset, no default
      else if (value->empty())
        os << key << " =\n";
      else {
        std::istringstream lines(*value);
        for (std::string line; std::getline(lines, line);) os << key << " = " << line << "\n";
      }
    }
  }
  return os.str();
}

std::optional<Config> parse_command(const Command& command, const std::vector<std::string>& args,
                                    po::options_description& options, std::ostream& out) {
  po::positional_options_description positional;
  options.add_options()("help,h", "show this command's options")(
      "dump-config", "print the effective configuration as INI and exit")(
      "config", po::value<std::vector<std::string>>()->composing(),
      "INI file(s); later files override earlier ones, the command line overrides all");
  command.declare(options, positional);
  const std::string who = "strata " + command.name;
  po::variables_map vars;
  try {
    const auto cli = po::command_line_parser(args).options(options).positional(positional).run();
    refuse_negative_unsigned(cli, options, who);
    po::store(cli, vars);
    if (vars.count("config")) {
      // po::store keeps the first value it sees: the command line first, then the files from
      // last to first, so the precedence is command line > last file > ... > first file.
      auto files = vars["config"].as<std::vector<std::string>>();
      for (auto it = files.rbegin(); it != files.rend(); ++it) {
        // An ifstream opens a directory without complaint and reads nothing from it.
        STRATA_CHECK(!std::filesystem::is_directory(*it), who, ": config file '", *it,
                     "' is a directory; pass an INI file (e.g. configs/decoder-tiny.ini)");
        std::ifstream in(*it);
        STRATA_CHECK(in.good(), who, ": config file '", *it, "' ",
                     std::filesystem::exists(*it) ? "cannot be read" : "does not exist");
        const auto file = po::parse_config_file(in, options, /*allow_unregistered=*/false);
        refuse_negative_unsigned(file, options, who);
        po::store(file, vars);
      }
    }
    if (vars.count("help")) {
      out << "usage: " << command.usage << "\n" << command.summary << "\n\n" << options << "\n";
      return std::nullopt;
    }
    // --dump-config answers before required options are checked, so a partial config can be
    // inspected.
    if (vars.count("dump-config")) {
      out << Config(vars, &options).dump();
      return std::nullopt;
    }
    po::notify(vars);
    // Values are checked once every source is in and before the command does any work.
    check_options(command.name, Config(vars, &options), options);
  } catch (const po::unknown_option& e) {
    const std::string name = strip_dashes(e.get_option_name());
    // "--greedy -1": a flag's optional value must be attached, so "-1" reads as an option.
    const auto at = std::find(args.begin(), args.end(), e.get_option_name());
    if (at != args.begin() && at != args.end()) {
      const std::string flag = strip_dashes(*(at - 1));
      const po::option_description* d = options.find_nothrow(flag, false);
      if (d != nullptr && (at - 1)->rfind("--", 0) == 0 && d->semantic()->min_tokens() == 0)
        STRATA_FAIL(who, ": --", flag, " takes its value attached, so '", *at,
                    "' reads as an option; write --", flag, "=true or --", flag, "=false (see `",
                    who, " --help`)");
    }
    const std::string hint = nearest(name, option_names(options));
    STRATA_FAIL(who, ": unknown option '--", name, "'",
                hint.empty() ? std::string() : "; did you mean '--" + hint + "'?", " (see `", who,
                " --help`)");
  } catch (const po::error& e) {
    STRATA_FAIL(who, ": ", e.what(), " (see `", who, " --help`)");
  }
  return Config(std::move(vars), &options);
}

namespace {

// This process's rank in an MPI job, 0 without one.
int world_rank() {
  if (!parallel::MpiEnv::active()) return 0;
  int rank = 0;
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  return rank;
}

}  // namespace

int run_main(std::span<const Command> commands, int argc, char** argv) {
  auto list = [&](std::ostream& os) {
    os << "usage: strata <command> [--config FILE.ini]... [--section.key value]...\n\ncommands:\n";
    for (const auto& c : commands)
      os << "  " << c.name << std::string(12 - std::min<size_t>(11, c.name.size()), ' ')
         << c.summary << "\n";
    os << "\n`strata <command> --help` lists a command's options.\n";
  };
  if (argc < 2 || std::string(argv[1]) == "--help" || std::string(argv[1]) == "-h" ||
      std::string(argv[1]) == "help") {
    list(argc < 2 ? std::cerr : std::cout);
    return argc < 2 ? 2 : 0;
  }
  const std::string name = argv[1];
  const auto it = std::find_if(commands.begin(), commands.end(),
                               [&](const Command& c) { return c.name == name; });
  if (it == commands.end()) {
    std::vector<std::string> names;
    for (const auto& c : commands) names.push_back(c.name);
    const std::string hint = nearest(name, names);
    std::cerr << "strata: unknown command '" << name << "'"
              << (hint.empty() ? "" : "; did you mean '" + hint + "'?") << "\n";
    list(std::cerr);
    return 2;
  }
  const std::vector<std::string> args(argv + 2, argv + argc);
  po::options_description options("options of strata " + name);
  // In an MPI job every rank meets the same configuration errors: world rank 0 prints them, and
  // every rank exits non-zero, so the job fails with one copy of the message.
  const int rank = world_rank();
  const bool speaks = rank == 0;
  std::ostringstream silent;
  std::ostream& out = speaks ? std::cout : silent;
  std::ostream& err = speaks ? std::cerr : silent;
  std::optional<Config> config;
  try {
    config = parse_command(*it, args, options, out);
  } catch (const Error& e) {
    err << e.what() << "\n";
    return 2;
  }
  if (!config) return 0;
  try {
    return it->run(*config);
  } catch (const Error& e) {
    // strata::Error: a check every rank makes alike (configuration, layout, sizes) or that the
    // ranks agreed on (train/parallel_agreement.h).
    err << "strata " << name << ": error: " << e.what() << "\n";
    return 1;
  } catch (const std::exception& e) {
    // Anything else (out of memory, I/O) may have hit this rank alone: say which.
    if (!speaks) std::cerr << "[rank " << rank << "] ";
    std::cerr << "strata " << name << ": error: " << e.what() << "\n";
    return 1;
  }
}

}  // namespace strata::launch
