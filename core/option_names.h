#pragma once
// Options declared once. A struct that a command's options fill lists them in a member
//   template <class V> void visit_options(V& v)
// calling, for each field,
//   v("section.key", field, "help");          // bool, integers, double or std::string
//   v("section.key", field, "help", names);   // an enum, with the OptionNames it accepts
// The field's initial value is the option's default, so the declaration, the default and the
// help live beside the struct and nowhere else. Visitors (launch/option_visitors.h) declare the
// options to the command line, read a configuration into the struct and print the defaults.
// Enum-valued options turn into enums here, at the edge; the code behind them never parses.
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "core/error.h"

namespace strata {

// The names an enum option accepts, in the order help lists them; a value may have several
// names (an alias), the first is the one printed.
template <class E>
using OptionNames = std::vector<std::pair<std::string, E>>;

template <class E>
std::string option_choices(const OptionNames<E>& names) {
  std::string out;
  for (const auto& [name, value] : names) out += (out.empty() ? "" : ", ") + name;
  return out;
}

template <class E>
const std::string& option_name(const OptionNames<E>& names, E value) {
  for (const auto& [name, v] : names)
    if (v == value) return name;
  STRATA_FAIL("option_name: a value without a name among ", option_choices(names));
}

// Throws naming the option, the text and the choices.
template <class E>
E parse_option(const OptionNames<E>& names, std::string_view text, std::string_view option) {
  for (const auto& [name, v] : names)
    if (name == text) return v;
  STRATA_FAIL(option, ": unknown value '", text, "'; valid: ", option_choices(names));
}

}  // namespace strata
