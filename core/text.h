#pragma once
// Small text helpers shared by every layer's error messages.
#include <string>
#include <vector>

namespace strata {

// Levenshtein distance, for "did you mean" hints.
size_t edit_distance(const std::string& a, const std::string& b);
// The candidate nearest to `name`, or "" when none is plausibly a typo of it (more than about a
// third of the name would have to change).
std::string nearest(const std::string& name, const std::vector<std::string>& candidates);

}  // namespace strata
