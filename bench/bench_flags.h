#pragma once
// The command line of every bench program: `--name value` pairs, each declared once with its
// help. `--help` prints them. An unknown flag, a flag without its value, a value that is not a
// number or lies outside the flag's range, or a choice not on its list ends the program with
// exit status 2 and a message that names the flag, what it got and what it takes.
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <limits>
#include <string>
#include <vector>

#include "core/kernels/cpu/gemm/gemm.h"
#include "core/runtime.h"

namespace strata::bench {

class BenchFlags {
 public:
  BenchFlags(std::string program, std::string summary)
      : program_(std::move(program)), summary_(std::move(summary)) {}

  // An integer in [min, max].
  template <class Int>
  void add(const std::string& name, Int* target, const std::string& help, long long min = 1,
           long long max = std::numeric_limits<int>::max()) {
    flags_.push_back({name, help + " (" + std::to_string(*target) + ")", false,
                      [this, name, target, min, max](const std::string& v) {
                        *target = Int(integer(name, v, min, max));
                      }});
  }
  // A number in [min, max].
  void add(const std::string& name, double* target, const std::string& help, double min,
           double max) {
    flags_.push_back({name, help + " (" + std::to_string(*target) + ")", false,
                      [this, name, target, min, max](const std::string& v) {
                        *target = number(name, v, min, max);
                      }});
  }
  // A string; one of `choices` unless that is empty.
  void add(const std::string& name, std::string* target, const std::string& help,
           std::vector<std::string> choices = {}) {
    std::string h = help;
    if (!choices.empty()) h += ": " + join(choices);
    h += " (" + (target->empty() ? std::string("none") : *target) + ")";
    flags_.push_back({name, h, false, [this, name, target, choices](const std::string& v) {
                        if (!choices.empty() && !contains(choices, v))
                          fail("--" + name + " got '" + v + "', expected one of " + join(choices));
                        *target = v;
                      }});
  }
  // A flag with no value.
  void add_switch(const std::string& name, bool* target, const std::string& help) {
    flags_.push_back({name, help, true, [target](const std::string&) { *target = true; }});
  }
  // A value handed to `apply`, which throws std::exception with the reason for a bad one.
  void add_action(const std::string& name, const std::string& help,
                  std::function<void(const std::string&)> apply) {
    flags_.push_back({name, help, false, [this, name, apply](const std::string& v) {
                        try {
                          apply(v);
                        } catch (const std::exception& e) {
                          fail("--" + name + " " + v + ": " + e.what());
                        }
                      }});
  }

  void parse(int argc, char** argv) {
    for (int i = 1; i < argc; ++i) {
      const std::string a = argv[i];
      if (a == "--help" || a == "-h") {
        usage(stdout);
        std::exit(0);
      }
      const Flag* f = find(a);
      if (f == nullptr) fail("unknown flag '" + a + "'");
      if (f->is_switch) {
        f->apply("");
        continue;
      }
      if (i + 1 >= argc) fail(a + " needs a value: " + f->help);
      f->apply(argv[++i]);
    }
  }

 private:
  struct Flag {
    std::string name, help;
    bool is_switch;
    std::function<void(const std::string&)> apply;
  };

  const Flag* find(const std::string& arg) const {
    for (const Flag& f : flags_)
      if (arg == "--" + f.name) return &f;
    return nullptr;
  }

  [[noreturn]] void fail(const std::string& why) const {
    std::fprintf(stderr, "%s: %s\n", program_.c_str(), why.c_str());
    usage(stderr);
    std::exit(2);
  }

  void usage(std::FILE* out) const {
    std::fprintf(out, "usage: %s [flags]\n%s\n", program_.c_str(), summary_.c_str());
    for (const Flag& f : flags_)
      std::fprintf(out, "  --%-14s %s\n", (f.name + (f.is_switch ? "" : " V")).c_str(),
                   f.help.c_str());
  }

  long long integer(const std::string& name, const std::string& v, long long min,
                    long long max) const {
    char* end = nullptr;
    errno = 0;
    const long long x = std::strtoll(v.c_str(), &end, 10);
    if (v.empty() || *end != '\0' || errno == ERANGE)
      fail("--" + name + " got '" + v + "', expected an integer");
    if (x < min || x > max)
      fail("--" + name + " got " + v + ", expected " + std::to_string(min) + ".." +
           std::to_string(max));
    return x;
  }

  double number(const std::string& name, const std::string& v, double min, double max) const {
    char* end = nullptr;
    errno = 0;
    const double x = std::strtod(v.c_str(), &end);
    if (v.empty() || *end != '\0' || errno == ERANGE)
      fail("--" + name + " got '" + v + "', expected a number");
    if (!(x >= min && x <= max))
      fail("--" + name + " got " + v + ", expected a number in [" + std::to_string(min) + ", " +
           std::to_string(max) + "]");
    return x;
  }

  static bool contains(const std::vector<std::string>& v, const std::string& s) {
    for (const auto& x : v)
      if (x == s) return true;
    return false;
  }
  static std::string join(const std::vector<std::string>& v) {
    std::string out;
    for (const auto& x : v) out += (out.empty() ? "" : ", ") + x;
    return out;
  }

  std::string program_, summary_;
  std::vector<Flag> flags_;
};

// --gemm: the Runtime's GEMM kernel (auto, avx2, dnnl, openblas); one this CPU cannot run is an
// error naming the CPU's features.
inline void add_gemm_flag(BenchFlags& flags) {
  flags.add_action(
      "gemm", "GEMM kernel: auto, avx2, dnnl, openblas (auto)",
      [](const std::string& v) { Runtime::get().set_gemm_kernel(gemm::parse_kernel(v)); });
}

}  // namespace strata::bench
