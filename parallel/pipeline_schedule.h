#pragma once
// Pipeline schedules as explicit per-stage action lists. A stage runs its list in order; the
// executor (parallel/pipeline_executor.h) turns each action into compute plus the point-to-point
// messages it implies:
//   forward(i)  = recv activation from stage s-1 (unless first), run the stage, send the output
//                 to stage s+1 (unless last; the last stage computes the loss instead)
//   backward(i) = recv the output gradient from stage s+1 (unless last), backward through the
//                 stage, send the input gradient to stage s-1 (unless first)
// Sends never block (they are asynchronous), receives do, so a schedule is runnable exactly when
// the cross-stage dependencies it implies have no cycle; validate() checks this by simulation.
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "core/option_names.h"

namespace strata::parallel {

enum class ScheduleKind {
  GPipe,     // every forward, then every backward: m activations in flight per stage
  OneFOneB,  // warm-up forwards, then one forward / one backward, then cool-down backwards
};
const char* schedule_name(ScheduleKind kind);  // "gpipe", "1f1b"
// Throws strata::Error listing the known names.
ScheduleKind parse_schedule_kind(std::string_view name);
// The names parse_schedule_kind accepts, for options (core/option_names.h).
const OptionNames<ScheduleKind>& schedule_kind_names();

enum class Phase { Forward, Backward };

struct Action {
  Phase phase = Phase::Forward;
  int64_t micro = 0;  // micro-batch index
  friend bool operator==(const Action&, const Action&) = default;
};
inline Action fwd(int64_t micro) {
  return {Phase::Forward, micro};
}
inline Action bwd(int64_t micro) {
  return {Phase::Backward, micro};
}
std::string action_str(const Action& a);                // "F3", "B0"
std::string actions_str(const std::vector<Action>& a);  // "F0 F1 B0 B1"

// One step of a stage's program: an action's compute or one of its messages.
enum class OpKind { RecvActivation, Forward, SendActivation, RecvGrad, Backward, SendGrad };
struct StageOp {
  OpKind kind = OpKind::Forward;
  int64_t micro = 0;
  friend bool operator==(const StageOp&, const StageOp&) = default;
};
std::string op_str(const StageOp& op);  // "recv_act(2)", "fwd(2)", "send_grad(0)", ...

class PipelineSchedule {
 public:
  // The standard schedules for `stages` stages and `micro_batches` micro-batches.
  PipelineSchedule(ScheduleKind kind, int stages, int64_t micro_batches);
  // Any other schedule, one action list per stage (validate() says whether it can run).
  PipelineSchedule(std::string name, std::vector<std::vector<Action>> per_stage,
                   int64_t micro_batches);

  const std::string& name() const { return name_; }
  int stages() const { return int(actions_.size()); }
  int64_t micro_batches() const { return micro_batches_; }
  const std::vector<Action>& actions(int stage) const;
  // The stage's actions expanded with the sends and receives they imply, in execution order.
  std::vector<StageOp> program(int stage) const;
  // Throws strata::Error naming the first problem: a micro-batch not forwarded then backwarded
  // exactly once on some stage, neighbours that exchange micro-batches in different orders
  // (point-to-point messages between two ranks are matched in order), or a deadlock.
  void validate() const;
  // Most micro-batches whose activations the stage holds at once (forwarded, not yet backwarded).
  int64_t peak_in_flight(int stage) const;
  std::string str() const;  // "1f1b, 2 stages x 4 micro-batches"

 private:
  std::string name_;
  int64_t micro_batches_;
  std::vector<std::vector<Action>> actions_;
};

// The schedule run with fixed costs per forward and per backward and instant messages: when each
// action starts and ends on each stage. Throws strata::Error on a deadlock.
struct ScheduleTimeline {
  struct Slot {
    Action action;
    double start = 0, end = 0;
  };
  std::vector<std::vector<Slot>> stages;
  double makespan = 0;  // from the first start to the last end over all stages
  // 1 - busy / makespan of one stage, and the mean over stages.
  double bubble_fraction(int stage) const;
  double bubble_fraction() const;
};
ScheduleTimeline simulate(const PipelineSchedule& schedule, double forward_cost = 1.0,
                          double backward_cost = 2.0);
// With a cost per stage (unbalanced stages: the first embeds, the last computes the loss).
ScheduleTimeline simulate(const PipelineSchedule& schedule, const std::vector<double>& forward_cost,
                          const std::vector<double>& backward_cost);

// The idle fraction of GPipe and 1F1B with uniform stages: (p - 1) / (m + p - 1).
double theoretical_bubble(int stages, int64_t micro_batches);

}  // namespace strata::parallel
