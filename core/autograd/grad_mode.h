#pragma once
// Whether ops record history. Thread-local so a data-loader or eval thread never changes what the
// training thread records.
namespace strata {

class GradMode {
 public:
  static bool is_enabled() { return enabled_; }
  static void set_enabled(bool e) { enabled_ = e; }

 private:
  static inline thread_local bool enabled_ = true;
};

// Disables history recording for its scope (evaluation, optimizer updates, backward formulas).
class NoGradGuard {
 public:
  NoGradGuard() : prev_(GradMode::is_enabled()) { GradMode::set_enabled(false); }
  ~NoGradGuard() { GradMode::set_enabled(prev_); }
  NoGradGuard(const NoGradGuard&) = delete;
  NoGradGuard& operator=(const NoGradGuard&) = delete;

 private:
  bool prev_;
};

class EnableGradGuard {
 public:
  EnableGradGuard() : prev_(GradMode::is_enabled()) { GradMode::set_enabled(true); }
  ~EnableGradGuard() { GradMode::set_enabled(prev_); }
  EnableGradGuard(const EnableGradGuard&) = delete;
  EnableGradGuard& operator=(const EnableGradGuard&) = delete;

 private:
  bool prev_;
};

}  // namespace strata
