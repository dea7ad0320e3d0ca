#include "optim/clock.h"

#include <chrono>

#include "core/error.h"

namespace strata::optim {

ClockKind parse_clock_kind(std::string_view name) {
  if (name == "steps") return ClockKind::steps;
  if (name == "tokens") return ClockKind::tokens;
  if (name == "seconds") return ClockKind::seconds;
  if (name == "reference_seconds" || name == "rst") return ClockKind::reference_seconds;
  if (name == "flops") return ClockKind::flops;
  STRATA_FAIL("clock: unknown kind '", name,
              "', expected one of steps, tokens, seconds, reference_seconds (rst), flops");
}

std::string_view clock_kind_name(ClockKind kind) {
  switch (kind) {
    case ClockKind::steps:
      return "steps";
    case ClockKind::tokens:
      return "tokens";
    case ClockKind::seconds:
      return "seconds";
    case ClockKind::reference_seconds:
      return "reference_seconds";
    case ClockKind::flops:
      return "flops";
  }
  return "?";
}

ReferenceTimeTable::ReferenceTimeTable(std::string name, std::vector<double> seconds_by_layers)
    : name_(std::move(name)), seconds_(std::move(seconds_by_layers)) {
  STRATA_CHECK(!seconds_.empty(), "ReferenceTimeTable '", name_, "': empty table");
  for (size_t i = 0; i < seconds_.size(); ++i)
    STRATA_CHECK(seconds_[i] > 0, "ReferenceTimeTable '", name_, "': entry for ", i + 1,
                 " layers is ", seconds_[i], ", expected > 0");
}

double ReferenceTimeTable::seconds(int active_layers) const {
  STRATA_CHECK(active_layers >= 1 && active_layers <= max_layers(), "ReferenceTimeTable '", name_,
               "': active layers ", active_layers, " outside [1, ", max_layers(), "]");
  return seconds_[size_t(active_layers - 1)];
}

ReferenceTimeTable ReferenceTimeTable::bert_rtx3090(bool fix_n7_typo) {
  return ReferenceTimeTable(
      fix_n7_typo ? "bert_rtx3090_mb128_fixed" : "bert_rtx3090_mb128",
      {0.02521, 0.03837, 0.05177, 0.06508, 0.07847, 0.09188, fix_n7_typo ? 0.1052 : 0.01052, 0.1186,
       0.1319, 0.1454, 0.1589, 0.1722, 0.1857, 0.1988, 0.212, 0.2253});
}

ReferenceTimeTable ReferenceTimeTable::t5_a100_batch144() {
  return ReferenceTimeTable("t5_a100_b144", {0.129, 0.209, 0.291, 0.373, 0.455, 0.538, 0.619, 0.703,
                                             0.783, 0.865, 0.947, 1.031});
}

Clock::Clock(ClockKind kind, TimeSource now) : kind_(kind), now_(std::move(now)) {
  if (!now_)
    now_ = [] {
      return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch())
          .count();
    };
  wall_start_ = now_();
}

void Clock::advance(int64_t tokens, double reference_seconds, double flops) {
  STRATA_CHECK(tokens >= 0, "Clock::advance: tokens must be >= 0, got ", tokens);
  STRATA_CHECK(reference_seconds >= 0, "Clock::advance: reference seconds must be >= 0, got ",
               reference_seconds);
  STRATA_CHECK(kind_ != ClockKind::reference_seconds || reference_seconds > 0,
               "Clock::advance: a reference-time clock needs the step's reference seconds (> 0)");
  STRATA_CHECK(flops >= 0, "Clock::advance: FLOPs must be >= 0, got ", flops);
  STRATA_CHECK(kind_ != ClockKind::flops || flops > 0,
               "Clock::advance: a FLOP clock needs the step's FLOPs (> 0)");
  s_.steps += 1;
  s_.tokens += tokens;
  s_.reference_seconds += reference_seconds;
  s_.flops += flops;
}

double Clock::wall_seconds() const {
  return s_.seconds + (now_() - wall_start_);
}

double Clock::elapsed() const {
  switch (kind_) {
    case ClockKind::steps:
      return double(s_.steps);
    case ClockKind::tokens:
      return double(s_.tokens);
    case ClockKind::seconds:
      return wall_seconds();
    case ClockKind::reference_seconds:
      return s_.reference_seconds;
    case ClockKind::flops:
      return s_.flops;
  }
  return 0.0;
}

ClockState Clock::state() const {
  ClockState out = s_;
  out.seconds = wall_seconds();
  return out;
}

void Clock::load_state(const ClockState& s) {
  STRATA_CHECK(
      s.steps >= 0 && s.tokens >= 0 && s.seconds >= 0 && s.reference_seconds >= 0 && s.flops >= 0,
      "Clock::load_state: negative counter (steps ", s.steps, ", tokens ", s.tokens, ", seconds ",
      s.seconds, ", reference seconds ", s.reference_seconds, ", FLOPs ", s.flops, ")");
  s_ = s;
  wall_start_ = now_();
}

}  // namespace strata::optim
