#include "optim/schedule.h"

#include <algorithm>
#include <cmath>
#include <numbers>

#include "core/error.h"

namespace strata::optim {

Schedule::Schedule(double total_steps) : total_(total_steps) {
  STRATA_CHECK(std::isfinite(total_steps) && total_steps > 0,
               "schedule: total_steps must be > 0, got ", total_steps);
}

double Schedule::lr_at(double s) const {
  STRATA_CHECK(s >= 0, "schedule ", name(), ": step must be >= 0, got ", s);
  return s >= total_ ? end_lr() : lr_before_end(s);
}

WarmupCosine::WarmupCosine(double base_lr, double warmup_steps, double total_steps, double final_lr)
    : Schedule(total_steps), base_(base_lr), warmup_(warmup_steps), final_(final_lr) {
  STRATA_CHECK(base_lr > 0, "schedule cosine: base_lr must be > 0, got ", base_lr);
  STRATA_CHECK(final_lr >= 0, "schedule cosine: final_lr must be >= 0, got ", final_lr);
  STRATA_CHECK(warmup_steps >= 0 && warmup_steps < total_steps,
               "schedule cosine: warmup_steps must be in [0, total_steps = ", total_steps,
               "), got ", warmup_steps);
}

double WarmupCosine::lr_before_end(double s) const {
  if (s < warmup_) return base_ * (0.5 + 0.5 * s / warmup_);
  const double x = (s - warmup_) / (total_steps() - warmup_);
  return final_ + (base_ - final_) * (1.0 + std::cos(std::numbers::pi * x)) / 2.0;
}

InverseSqrtLegacy::InverseSqrtLegacy(double total_steps, double max_lr)
    : Schedule(total_steps), max_lr_(max_lr) {
  STRATA_CHECK(max_lr > 0, "schedule legacy: max_lr must be > 0, got ", max_lr);
  // Python's math.ceil(total_steps * 0.9), same double product.
  n1_ = std::ceil(total_steps * 0.9);
  start_ = std::min(max_lr_, 1.0 / std::sqrt(n1_));
}

double InverseSqrtLegacy::lr_before_end(double s) const {
  if (s < n1_) return s == 0 ? max_lr_ : std::min(max_lr_, 1.0 / std::sqrt(s));
  return start_ * (1.0 - (s - n1_) / (total_steps() - n1_));
}

BudgetOneCycle::BudgetOneCycle(double peak_lr, double total_steps)
    : Schedule(total_steps), peak_(peak_lr), half_(total_steps / 2) {
  STRATA_CHECK(peak_lr > 0, "schedule budget-one-cycle: peak lr must be > 0, got ", peak_lr);
}

double BudgetOneCycle::lr_before_end(double s) const {
  return s < half_ ? peak_ * (s / half_) : peak_ * (2.0 - s / half_);
}

CosineBudget::CosineBudget(double base_lr, double warmup_steps, double total_steps, double floor)
    : Schedule(total_steps), base_(base_lr), warmup_(warmup_steps), floor_(floor) {
  STRATA_CHECK(base_lr > 0, "schedule cosine-budget: base_lr must be > 0, got ", base_lr);
  STRATA_CHECK(floor >= 0 && floor <= 1, "schedule cosine-budget: floor must be in [0, 1], got ",
               floor);
  STRATA_CHECK(warmup_steps >= 0 && warmup_steps < total_steps,
               "schedule cosine-budget: warmup_steps must be in [0, total_steps = ", total_steps,
               "), got ", warmup_steps);
}

double CosineBudget::lr_before_end(double s) const {
  if (s < warmup_) return base_ * ((s / std::max(1.0, warmup_)) * 0.5 + 0.5);
  const double progress = (s - warmup_) / std::max(1.0, total_steps() - warmup_);
  return base_ * std::max(floor_, 0.5 * (1.0 + std::cos(std::numbers::pi * progress)));
}

ConstantLr::ConstantLr(double lr, double total_steps) : Schedule(total_steps), lr_(lr) {
  STRATA_CHECK(lr >= 0, "schedule constant: lr must be >= 0, got ", lr);
}

std::unique_ptr<Schedule> make_schedule(const ScheduleConfig& c) {
  if (c.name == "cosine")
    return std::make_unique<WarmupCosine>(c.base_lr, c.warmup_steps, c.total_steps, c.final_lr);
  if (c.name == "legacy") return std::make_unique<InverseSqrtLegacy>(c.total_steps);
  if (c.name == "budget-one-cycle")
    return std::make_unique<BudgetOneCycle>(c.base_lr, c.total_steps);
  if (c.name == "cosine-budget")
    return std::make_unique<CosineBudget>(c.base_lr, c.warmup_steps, c.total_steps, c.floor);
  if (c.name == "constant") return std::make_unique<ConstantLr>(c.base_lr, c.total_steps);
  STRATA_FAIL("schedule: unknown name '", c.name,
              "', expected one of cosine, legacy, budget-one-cycle, cosine-budget, constant");
}

BudgetSchedule::BudgetSchedule(std::shared_ptr<const Schedule> schedule, ClockKind kind,
                               double budget, bool quantize)
    : schedule_(std::move(schedule)), kind_(kind), budget_(budget), quantize_(quantize) {
  STRATA_CHECK(schedule_ != nullptr, "BudgetSchedule: no schedule");
  STRATA_CHECK(std::isfinite(budget) && budget > 0, "BudgetSchedule: budget must be > 0 ",
               clock_kind_name(kind), ", got ", budget);
}

double BudgetSchedule::schedule_step(double elapsed) const {
  STRATA_CHECK(elapsed >= 0, "BudgetSchedule: elapsed must be >= 0, got ", elapsed);
  // Multiply first: for integer counters the product is exact, so a step clock whose budget is
  // T steps maps step k to exactly k.
  const double s = elapsed * schedule_->total_steps() / budget_;
  return quantize_ ? std::floor(s) : s;
}

void BudgetSchedule::check_kind(const Clock& clock) const {
  STRATA_CHECK(clock.kind() == kind_, "BudgetSchedule: budget is in ", clock_kind_name(kind_),
               " but the clock counts ", clock_kind_name(clock.kind()));
}

double BudgetSchedule::lr(const Clock& clock) const {
  check_kind(clock);
  return lr(clock.elapsed());
}

double BudgetSchedule::fraction(const Clock& clock) const {
  check_kind(clock);
  return clock.elapsed() / budget_;
}

bool BudgetSchedule::done(const Clock& clock) const {
  check_kind(clock);
  return clock.elapsed() >= budget_;
}

}  // namespace strata::optim
