#pragma once
// The command-line side of options declared once (core/option_names.h): visitors that walk a
// struct's visit_options to declare its options to Boost.Program_options with the struct's
// initial values as defaults, and to read a configuration back into the struct. Enums are
// declared as strings listing their names and parsed here, at the edge.
#include <string>
#include <type_traits>

#include "core/option_names.h"
#include "launch/config.h"

namespace strata::launch {

// Declares every option a struct visits, its current value the default.
class DeclareOptions {
 public:
  explicit DeclareOptions(po::options_description& o) : o_(o) {}

  template <class T>
  void operator()(const char* key, const T& field, const char* help) {
    o_.add_options()(key, po::value<T>()->default_value(field), help);
  }
  template <class E>
  void operator()(const char* key, const E& field, const char* help, const OptionNames<E>& names) {
    const std::string text = std::string(help) + ": " + option_choices(names);
    o_.add_options()(key, po::value<std::string>()->default_value(option_name(names, field)),
                     text.c_str());
  }

 private:
  po::options_description& o_;
};

// Reads every option a struct visits from a configuration parsed with DeclareOptions.
class ReadOptions {
 public:
  explicit ReadOptions(const Config& cfg) : cfg_(cfg) {}

  template <class T>
  void operator()(const char* key, T& field, const char*) {
    field = cfg_.get<T>(key);
  }
  template <class E>
  void operator()(const char* key, E& field, const char*, const OptionNames<E>& names) {
    field = parse_option(names, cfg_.get<std::string>(key), key);
  }

 private:
  const Config& cfg_;
};

// Declares a struct's options (defaults: a default-constructed S) and reads them back.
template <class S>
void declare_options(po::options_description& o) {
  S defaults;
  DeclareOptions d(o);
  defaults.visit_options(d);
}
template <class S>
S read_options(const Config& cfg) {
  S s;
  ReadOptions r(cfg);
  s.visit_options(r);
  return s;
}

}  // namespace strata::launch
