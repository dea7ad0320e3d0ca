#pragma once
// Learning-rate schedules. A Schedule is a function of a step s on its own nominal axis of
// total_steps() steps; lr_at(s) for s >= total_steps() is exactly end_lr() (the floor or 0), never
// the continued formula. BudgetSchedule maps any clock (steps, tokens, wall or reference seconds)
// onto that axis as NTNG's "fake step", s = floor(elapsed * T / budget), so every schedule decays
// fully exactly when the budget is spent, whatever the clock measures.
//
// The formulas (docs/optim.md):
//   cosine (nanoT5):        s < W: base*(0.5 + 0.5*s/W)
//                           W <= s < T: final + (base-final)*(1+cos(pi*(s-W)/(T-W)))/2;  end: final
//   legacy (T5 inv-sqrt):   N = ceil(0.9*T); s < N: min(1e-2, 1/sqrt(s)) (s=0: 1e-2)
//                           N <= s < T: min(1e-2, 1/sqrt(N)) * (1 - (s-N)/(T-N));  end: 0
//   budget-one-cycle:       h = T/2; s < h: peak*s/h, else peak*(2 - s/h);  end: 0
//   cosine-budget (NTNG):   s < W: base*((s/max(1,W))*0.5 + 0.5)
//                           else base*max(floor, 0.5*(1+cos(pi*(s-W)/max(1,T-W))));  end:
//                           base*floor
//   constant:               base
#include <memory>
#include <string>

#include "optim/clock.h"

namespace strata::optim {

class Schedule {
 public:
  explicit Schedule(double total_steps);
  virtual ~Schedule() = default;
  virtual std::string name() const = 0;
  double total_steps() const { return total_; }
  // s < 0 is an error; s >= total_steps() gives end_lr().
  double lr_at(double s) const;
  virtual double end_lr() const = 0;

 protected:
  // Only called with 0 <= s < total_steps().
  virtual double lr_before_end(double s) const = 0;

 private:
  double total_;
};

// nanoT5 "cosine": LinearLR(0.5 -> 1 over W) then CosineAnnealingLR(T_max = T-W, eta_min = final).
class WarmupCosine : public Schedule {
 public:
  WarmupCosine(double base_lr, double warmup_steps, double total_steps, double final_lr);
  std::string name() const override { return "cosine"; }
  double end_lr() const override { return final_; }

 protected:
  double lr_before_end(double s) const override;

 private:
  double base_, warmup_, final_;
};

// T5 "legacy" inverse square root with a linear cool-down over the last 10%; ignores the base lr.
class InverseSqrtLegacy : public Schedule {
 public:
  explicit InverseSqrtLegacy(double total_steps, double max_lr = 1e-2);
  std::string name() const override { return "legacy"; }
  double end_lr() const override { return 0.0; }
  double cooldown_start() const { return n1_; }

 protected:
  double lr_before_end(double s) const override;

 private:
  double max_lr_, n1_, start_;
};

// Crammed BERT "budget-one-cycle": a triangle peaking at half the budget, 0 at its end. NTNG uses
// T = 2,000,000 fake steps (factor s/1e6, then 2 - s/1e6).
class BudgetOneCycle : public Schedule {
 public:
  explicit BudgetOneCycle(double peak_lr, double total_steps = 2'000'000);
  std::string name() const override { return "budget-one-cycle"; }
  double end_lr() const override { return 0.0; }

 protected:
  double lr_before_end(double s) const override;

 private:
  double peak_, half_;
};

// NTNG's T5 "cosine-budget" (t5/utils/optim.py): warm-up factor 0.5 -> 1, cosine to a relative
// floor (1e-5 by default).
class CosineBudget : public Schedule {
 public:
  CosineBudget(double base_lr, double warmup_steps, double total_steps, double floor = 1e-5);
  std::string name() const override { return "cosine-budget"; }
  double end_lr() const override { return base_ * floor_; }

 protected:
  double lr_before_end(double s) const override;

 private:
  double base_, warmup_, floor_;
};

class ConstantLr : public Schedule {
 public:
  ConstantLr(double lr, double total_steps);
  std::string name() const override { return "constant"; }
  double end_lr() const override { return lr_; }

 protected:
  double lr_before_end(double) const override { return lr_; }

 private:
  double lr_;
};

struct ScheduleConfig {
  std::string name = "cosine";  // cosine | legacy | budget-one-cycle | cosine-budget | constant
  double base_lr = 1e-3;        // peak lr (legacy: ignored, its peak is max_lr = 1e-2)
  double warmup_steps = 0;
  double total_steps = 0;  // the nominal axis T
  double final_lr = 1e-5;  // cosine: absolute end lr (nanoT5 final_cosine)
  double floor = 1e-5;     // cosine-budget: end lr relative to base_lr
};
// Throws naming the unknown schedule and the valid names.
std::unique_ptr<Schedule> make_schedule(const ScheduleConfig& cfg);

// A schedule driven by a clock with a budget in the clock's unit.
class BudgetSchedule {
 public:
  // quantize floors the fake step to an integer as NTNG does (int(elapsed / budget * T)).
  BudgetSchedule(std::shared_ptr<const Schedule> schedule, ClockKind kind, double budget,
                 bool quantize = true);

  const Schedule& schedule() const { return *schedule_; }
  ClockKind kind() const { return kind_; }
  double budget() const { return budget_; }

  // elapsed * T / budget (floored when quantizing); exactly the step count for a step clock whose
  // budget equals T.
  double schedule_step(double elapsed) const;
  double lr(double elapsed) const { return schedule_->lr_at(schedule_step(elapsed)); }
  // Throws when the clock's kind differs from the budget's.
  double lr(const Clock& clock) const;
  double fraction(const Clock& clock) const;
  bool done(const Clock& clock) const;

 private:
  void check_kind(const Clock& clock) const;

  std::shared_ptr<const Schedule> schedule_;
  ClockKind kind_;
  double budget_;
  bool quantize_;
};

}  // namespace strata::optim
