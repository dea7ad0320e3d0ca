#pragma once
// Errors a user can cause are exceptions with a message that names the op, what it got and what
// it expected. `assert` is reserved for internal invariants that no input can break.
#include <sstream>
#include <stdexcept>
#include <string>

namespace strata {

class Error : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

namespace detail {
template <class... Args>
std::string concat(const Args&... args) {
  std::ostringstream os;
  (os << ... << args);
  return os.str();
}
}  // namespace detail

}  // namespace strata

// STRATA_CHECK(cond, "op: got ", x, ", expected ", y) throws strata::Error when cond is false.
#define STRATA_CHECK(cond, ...)                                                \
  do {                                                                         \
    if (!(cond)) throw ::strata::Error(::strata::detail::concat(__VA_ARGS__)); \
  } while (0)

#define STRATA_FAIL(...) throw ::strata::Error(::strata::detail::concat(__VA_ARGS__))
