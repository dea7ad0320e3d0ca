#pragma once
// Small collectives the parallel checkpoint code is built from: strings between ranks, and
// turning one rank's exception into the same exception on every rank (a rank that threw alone
// would leave the others waiting in the next collective). Internal to strata_train.
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "parallel/communicator.h"

namespace strata::train::detail {

// Every rank's string, in rank order.
std::vector<std::string> all_gather_strings(parallel::Communicator& c, const std::string& s,
                                            std::string_view what);
// Root's string on every rank.
std::string broadcast_string(parallel::Communicator& c, const std::string& s, int root,
                             std::string_view what);

// Collective: returns on every rank when no rank failed; otherwise every rank throws
// strata::Error with the message of the lowest failing rank (naming that rank when the group
// has more than one).
void agree(parallel::Communicator& c, bool failed, const std::string& message,
           std::string_view what);

// Runs fn on every rank, then agree()s on whether it threw anywhere.
template <class F>
void on_all_ranks(parallel::Communicator& c, std::string_view what, F&& fn) {
  bool failed = false;
  std::string message;
  try {
    std::forward<F>(fn)();
  } catch (const std::exception& e) {
    failed = true;
    message = e.what();
  }
  agree(c, failed, message, what);
}

}  // namespace strata::train::detail
