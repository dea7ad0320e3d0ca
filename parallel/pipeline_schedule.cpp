#include "parallel/pipeline_schedule.h"

#include <algorithm>

#include "core/error.h"

namespace strata::parallel {

const char* schedule_name(ScheduleKind kind) {
  switch (kind) {
    case ScheduleKind::GPipe:
      return "gpipe";
    case ScheduleKind::OneFOneB:
      return "1f1b";
  }
  return "?";
}

const OptionNames<ScheduleKind>& schedule_kind_names() {
  static const OptionNames<ScheduleKind> names{{"gpipe", ScheduleKind::GPipe},
                                               {"1f1b", ScheduleKind::OneFOneB}};
  return names;
}

ScheduleKind parse_schedule_kind(std::string_view name) {
  return parse_option(schedule_kind_names(), name, "pipeline schedule");
}

std::string action_str(const Action& a) {
  std::string s(a.phase == Phase::Forward ? "F" : "B");
  return s += std::to_string(a.micro);
}

std::string actions_str(const std::vector<Action>& actions) {
  std::string s;
  for (const Action& a : actions) {
    if (!s.empty()) s += ' ';
    s += action_str(a);
  }
  return s;
}

std::string op_str(const StageOp& op) {
  const char* names[] = {"recv_act", "fwd", "send_act", "recv_grad", "bwd", "send_grad"};
  return std::string(names[int(op.kind)]) + "(" + std::to_string(op.micro) + ")";
}

namespace {

std::vector<Action> gpipe_actions(int64_t m) {
  std::vector<Action> a;
  for (int64_t i = 0; i < m; ++i) a.push_back(fwd(i));
  for (int64_t i = 0; i < m; ++i) a.push_back(bwd(i));
  return a;
}

// Stage s starts p-1-s forwards ahead, so that when the last stage begins backwarding micro-batch
// 0 every stage is busy; from then on each stage alternates and holds at most p-s activations.
std::vector<Action> one_f_one_b_actions(int p, int s, int64_t m) {
  const int64_t warm = std::min<int64_t>(p - 1 - s, m);
  std::vector<Action> a;
  for (int64_t i = 0; i < warm; ++i) a.push_back(fwd(i));
  for (int64_t k = 0; k < m - warm; ++k) {
    a.push_back(fwd(warm + k));
    a.push_back(bwd(k));
  }
  for (int64_t i = m - warm; i < m; ++i) a.push_back(bwd(i));
  return a;
}

std::vector<int64_t> order_of(const std::vector<Action>& actions, Phase phase) {
  std::vector<int64_t> o;
  for (const Action& a : actions)
    if (a.phase == phase) o.push_back(a.micro);
  return o;
}

std::string order_str(const std::vector<int64_t>& o) {
  std::string s = "[";
  for (size_t i = 0; i < o.size(); ++i) {
    if (i) s += ", ";
    s += std::to_string(o[i]);
  }
  return s + "]";
}

}  // namespace

PipelineSchedule::PipelineSchedule(ScheduleKind kind, int stages, int64_t micro_batches)
    : name_(schedule_name(kind)), micro_batches_(micro_batches) {
  STRATA_CHECK(stages > 0, "pipeline: the number of stages must be positive, got ", stages);
  STRATA_CHECK(micro_batches > 0, "pipeline: the number of micro-batches must be positive, got ",
               micro_batches);
  for (int s = 0; s < stages; ++s)
    actions_.push_back(kind == ScheduleKind::GPipe ? gpipe_actions(micro_batches)
                                                   : one_f_one_b_actions(stages, s, micro_batches));
}

PipelineSchedule::PipelineSchedule(std::string name, std::vector<std::vector<Action>> per_stage,
                                   int64_t micro_batches)
    : name_(std::move(name)), micro_batches_(micro_batches), actions_(std::move(per_stage)) {
  STRATA_CHECK(!actions_.empty(), "pipeline: schedule ", name_, " has no stages");
  STRATA_CHECK(micro_batches > 0, "pipeline: the number of micro-batches must be positive, got ",
               micro_batches);
}

const std::vector<Action>& PipelineSchedule::actions(int stage) const {
  STRATA_CHECK(stage >= 0 && stage < stages(), "pipeline: stage ", stage, " of a ", stages(),
               "-stage schedule");
  return actions_[size_t(stage)];
}

std::vector<StageOp> PipelineSchedule::program(int stage) const {
  const bool first = stage == 0, last = stage == stages() - 1;
  std::vector<StageOp> ops;
  for (const Action& a : actions(stage)) {
    if (a.phase == Phase::Forward) {
      if (!first) ops.push_back({OpKind::RecvActivation, a.micro});
      ops.push_back({OpKind::Forward, a.micro});
      if (!last) ops.push_back({OpKind::SendActivation, a.micro});
    } else {
      if (!last) ops.push_back({OpKind::RecvGrad, a.micro});
      ops.push_back({OpKind::Backward, a.micro});
      if (!first) ops.push_back({OpKind::SendGrad, a.micro});
    }
  }
  return ops;
}

std::string PipelineSchedule::str() const {
  return name_ + ", " + std::to_string(stages()) + " stages x " + std::to_string(micro_batches_) +
         " micro-batches";
}

int64_t PipelineSchedule::peak_in_flight(int stage) const {
  int64_t live = 0, peak = 0;
  for (const Action& a : actions(stage)) {
    live += a.phase == Phase::Forward ? 1 : -1;
    peak = std::max(peak, live);
  }
  return peak;
}

void PipelineSchedule::validate() const {
  const int64_t m = micro_batches_;
  for (int s = 0; s < stages(); ++s) {
    std::vector<int> forwarded(size_t(m), 0), backwarded(size_t(m), 0);
    for (const Action& a : actions_[size_t(s)]) {
      STRATA_CHECK(a.micro >= 0 && a.micro < m, "pipeline schedule ", str(), ": stage ", s, " has ",
                   action_str(a), ", outside micro-batches 0..", m - 1);
      auto& count = a.phase == Phase::Forward ? forwarded : backwarded;
      STRATA_CHECK(count[size_t(a.micro)] == 0, "pipeline schedule ", str(), ": stage ", s,
                   " runs ", action_str(a), " twice");
      STRATA_CHECK(a.phase == Phase::Forward || forwarded[size_t(a.micro)] == 1,
                   "pipeline schedule ", str(), ": stage ", s, " runs ", action_str(a),
                   " before forwarding micro-batch ", a.micro);
      ++count[size_t(a.micro)];
    }
    for (int64_t i = 0; i < m; ++i)
      STRATA_CHECK(forwarded[size_t(i)] == 1 && backwarded[size_t(i)] == 1, "pipeline schedule ",
                   str(), ": stage ", s, " never ",
                   forwarded[size_t(i)] == 0 ? "forwards" : "backwards", " micro-batch ", i);
  }
  for (int s = 0; s + 1 < stages(); ++s)
    for (Phase ph : {Phase::Forward, Phase::Backward}) {
      const auto a = order_of(actions_[size_t(s)], ph), b = order_of(actions_[size_t(s + 1)], ph);
      STRATA_CHECK(a == b, "pipeline schedule ", str(), ": stages ", s, " and ", s + 1, " run ",
                   ph == Phase::Forward ? "forwards" : "backwards", " in different orders (",
                   order_str(a), " vs ", order_str(b),
                   "); messages between neighbours are matched in the order they are sent");
    }
  simulate(*this);  // throws on a deadlock
}

ScheduleTimeline simulate(const PipelineSchedule& sched, double forward_cost,
                          double backward_cost) {
  return simulate(sched, std::vector<double>(size_t(sched.stages()), forward_cost),
                  std::vector<double>(size_t(sched.stages()), backward_cost));
}

ScheduleTimeline simulate(const PipelineSchedule& sched, const std::vector<double>& forward_cost,
                          const std::vector<double>& backward_cost) {
  const int p = sched.stages();
  STRATA_CHECK(int(forward_cost.size()) == p && int(backward_cost.size()) == p,
               "pipeline: simulate needs one forward and one backward cost per stage (", p,
               "), got ", forward_cost.size(), " and ", backward_cost.size());
  const int64_t m = sched.micro_batches();
  // End time of F(i) / B(i) on each stage; < 0 until it has run.
  std::vector<std::vector<double>> f_end(size_t(p), std::vector<double>(size_t(m), -1)),
      b_end = f_end;
  std::vector<size_t> next(size_t(p), 0);
  std::vector<double> free_at(size_t(p), 0);
  ScheduleTimeline tl;
  tl.stages.resize(size_t(p));

  // The message an action waits for: the end time of its producer, or -1 if not produced yet.
  auto ready_at = [&](int s, const Action& a) -> double {
    if (a.phase == Phase::Forward) return s == 0 ? 0.0 : f_end[size_t(s - 1)][size_t(a.micro)];
    return s == p - 1 ? f_end[size_t(s)][size_t(a.micro)] : b_end[size_t(s + 1)][size_t(a.micro)];
  };
  // Every dependency is an already finished action, so sweeping the stages until none can move
  // gives the same times in any sweep order.
  for (bool moved = true; moved;) {
    moved = false;
    for (int s = 0; s < p; ++s) {
      const auto& acts = sched.actions(s);
      while (next[size_t(s)] < acts.size()) {
        const Action& a = acts[next[size_t(s)]];
        STRATA_CHECK(a.micro >= 0 && a.micro < m, "pipeline schedule ", sched.str(), ": stage ", s,
                     " has ", action_str(a), ", outside micro-batches 0..", m - 1);
        const double dep = ready_at(s, a);
        if (dep < 0) break;
        const double start = std::max(free_at[size_t(s)], dep);
        const double end = start + (a.phase == Phase::Forward ? forward_cost[size_t(s)]
                                                              : backward_cost[size_t(s)]);
        (a.phase == Phase::Forward ? f_end : b_end)[size_t(s)][size_t(a.micro)] = end;
        tl.stages[size_t(s)].push_back({a, start, end});
        free_at[size_t(s)] = end;
        ++next[size_t(s)];
        moved = true;
      }
    }
  }
  std::string stuck;
  for (int s = 0; s < p; ++s) {
    const auto& acts = sched.actions(s);
    if (next[size_t(s)] == acts.size()) continue;
    const Action& a = acts[next[size_t(s)]];
    // Forwards wait for the stage before; backwards for the stage after (the last stage for its
    // own forward).
    const bool from_forward = a.phase == Phase::Forward || s == p - 1;
    const int producer = a.phase == Phase::Forward ? s - 1 : (s == p - 1 ? s : s + 1);
    stuck += "; stage " + std::to_string(s) + " waits at " + action_str(a) + " for ";
    stuck += from_forward ? 'F' : 'B';
    stuck += std::to_string(a.micro) + " of stage " + std::to_string(producer);
  }
  STRATA_CHECK(stuck.empty(), "pipeline schedule ", sched.str(), " deadlocks", stuck);
  for (const auto& slots : tl.stages)
    for (const auto& slot : slots) tl.makespan = std::max(tl.makespan, slot.end);
  return tl;
}

double ScheduleTimeline::bubble_fraction(int stage) const {
  double busy = 0;
  for (const Slot& s : stages.at(size_t(stage))) busy += s.end - s.start;
  return makespan > 0 ? 1.0 - busy / makespan : 0.0;
}

double ScheduleTimeline::bubble_fraction() const {
  double sum = 0;
  for (int s = 0; s < int(stages.size()); ++s) sum += bubble_fraction(s);
  return stages.empty() ? 0.0 : sum / double(stages.size());
}

double theoretical_bubble(int stages, int64_t micro_batches) {
  return double(stages - 1) / double(micro_batches + stages - 1);
}

}  // namespace strata::parallel
