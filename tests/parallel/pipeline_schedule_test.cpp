// Pipeline schedules: exact action lists, the implied messages, validation, peak in-flight
// activations and the simulated bubble against (p - 1) / (m + p - 1). No MPI needed.
#include "parallel/pipeline_schedule.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <string>

#include "core/error.h"

namespace strata::parallel {
namespace {

using Actions = std::vector<Action>;

// The message of the strata::Error that fn throws ("" if it does not throw).
template <class F>
std::string error_of(F&& fn) {
  try {
    fn();
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

TEST(PipelineSchedule, GPipeRunsEveryForwardThenEveryBackward) {
  const PipelineSchedule s(ScheduleKind::GPipe, 2, 3);
  for (int st = 0; st < 2; ++st)
    EXPECT_EQ(s.actions(st), (Actions{fwd(0), fwd(1), fwd(2), bwd(0), bwd(1), bwd(2)}));
  EXPECT_EQ(s.name(), "gpipe");
  EXPECT_EQ(s.str(), "gpipe, 2 stages x 3 micro-batches");
}

TEST(PipelineSchedule, OneFOneBTwoStagesFourMicroBatches) {
  const PipelineSchedule s(ScheduleKind::OneFOneB, 2, 4);
  EXPECT_EQ(actions_str(s.actions(0)), "F0 F1 B0 F2 B1 F3 B2 B3");
  EXPECT_EQ(actions_str(s.actions(1)), "F0 B0 F1 B1 F2 B2 F3 B3");
}

TEST(PipelineSchedule, OneFOneBFourStagesFourMicroBatches) {
  const PipelineSchedule s(ScheduleKind::OneFOneB, 4, 4);
  EXPECT_EQ(actions_str(s.actions(0)), "F0 F1 F2 F3 B0 B1 B2 B3");
  EXPECT_EQ(actions_str(s.actions(1)), "F0 F1 F2 B0 F3 B1 B2 B3");
  EXPECT_EQ(actions_str(s.actions(2)), "F0 F1 B0 F2 B1 F3 B2 B3");
  EXPECT_EQ(actions_str(s.actions(3)), "F0 B0 F1 B1 F2 B2 F3 B3");
}

TEST(PipelineSchedule, OneFOneBWithFewerMicroBatchesThanStagesWarmsUpWithAll) {
  const PipelineSchedule s(ScheduleKind::OneFOneB, 4, 2);
  EXPECT_EQ(actions_str(s.actions(0)), "F0 F1 B0 B1");
  EXPECT_EQ(actions_str(s.actions(2)), "F0 F1 B0 B1");
  EXPECT_EQ(actions_str(s.actions(3)), "F0 B0 F1 B1");
}

TEST(PipelineSchedule, ProgramAddsTheImpliedMessages) {
  const PipelineSchedule s(ScheduleKind::OneFOneB, 3, 2);
  auto str = [](const std::vector<StageOp>& ops) {
    std::string out;
    for (const auto& op : ops) {
      if (!out.empty()) out += ' ';
      out += op_str(op);
    }
    return out;
  };
  EXPECT_EQ(str(s.program(0)),
            "fwd(0) send_act(0) fwd(1) send_act(1) recv_grad(0) bwd(0) recv_grad(1) bwd(1)");
  EXPECT_EQ(str(s.program(1)),
            "recv_act(0) fwd(0) send_act(0) recv_act(1) fwd(1) send_act(1) recv_grad(0) bwd(0) "
            "send_grad(0) recv_grad(1) bwd(1) send_grad(1)");
  EXPECT_EQ(str(s.program(2)),
            "recv_act(0) fwd(0) bwd(0) send_grad(0) recv_act(1) fwd(1) bwd(1) send_grad(1)");
  // One stage: no messages at all.
  EXPECT_EQ(str(PipelineSchedule(ScheduleKind::GPipe, 1, 2).program(0)),
            "fwd(0) fwd(1) bwd(0) bwd(1)");
}

TEST(PipelineSchedule, PeakInFlightActivations) {
  for (int p : {1, 2, 3, 4, 8})
    for (int64_t m : {1, 2, 4, 8, 16}) {
      const PipelineSchedule g(ScheduleKind::GPipe, p, m), f(ScheduleKind::OneFOneB, p, m);
      for (int s = 0; s < p; ++s) {
        EXPECT_EQ(g.peak_in_flight(s), m) << g.str() << " stage " << s;
        EXPECT_EQ(f.peak_in_flight(s), std::min<int64_t>(m, p - s)) << f.str() << " stage " << s;
      }
    }
}

TEST(PipelineSchedule, StandardSchedulesValidate) {
  for (int p : {1, 2, 3, 4, 8})
    for (int64_t m : {1, 2, 3, 4, 8, 16})
      for (ScheduleKind k : {ScheduleKind::GPipe, ScheduleKind::OneFOneB}) {
        const PipelineSchedule s(k, p, m);
        EXPECT_NO_THROW(s.validate()) << s.str();
      }
}

TEST(PipelineSchedule, SimulatedBubbleIsTheTheoreticalOne) {
  for (int p : {1, 2, 3, 4, 8})
    for (int64_t m : {1, 2, 4, 8, 16})
      for (ScheduleKind k : {ScheduleKind::GPipe, ScheduleKind::OneFOneB})
        for (double backward_cost : {1.0, 2.0}) {
          const PipelineSchedule s(k, p, m);
          const ScheduleTimeline tl = simulate(s, 1.0, backward_cost);
          EXPECT_DOUBLE_EQ(tl.makespan, double(m + p - 1) * (1.0 + backward_cost)) << s.str();
          for (int st = 0; st < p; ++st)
            EXPECT_NEAR(tl.bubble_fraction(st), theoretical_bubble(p, m), 1e-12)
                << s.str() << " stage " << st << " backward cost " << backward_cost;
        }
  EXPECT_DOUBLE_EQ(theoretical_bubble(2, 4), 1.0 / 5.0);
  EXPECT_DOUBLE_EQ(theoretical_bubble(4, 8), 3.0 / 11.0);
  EXPECT_DOUBLE_EQ(theoretical_bubble(1, 8), 0.0);
}

TEST(PipelineSchedule, TimelineOfTwoStageGPipe) {
  const ScheduleTimeline tl = simulate(PipelineSchedule(ScheduleKind::GPipe, 2, 2), 1.0, 2.0);
  // Stage 0: F0 [0,1] F1 [1,2], then B0 once stage 1 has sent it: stage 1 runs F0 [1,2]
  // F1 [2,3] B0 [3,5] B1 [5,7], so stage 0 runs B0 [5,7] B1 [7,9].
  ASSERT_EQ(tl.stages[0].size(), 4u);
  EXPECT_DOUBLE_EQ(tl.stages[1][0].start, 1.0);
  EXPECT_DOUBLE_EQ(tl.stages[1][3].end, 7.0);
  EXPECT_DOUBLE_EQ(tl.stages[0][2].start, 5.0);
  EXPECT_DOUBLE_EQ(tl.stages[0][3].end, 9.0);
  EXPECT_DOUBLE_EQ(tl.makespan, 9.0);
}

TEST(PipelineSchedule, UnbalancedStagesWaitForTheSlowestOne) {
  // Stage 1 takes twice as long: stage 1 runs F0 [1,3] F1 [3,5] B0 [5,9] B1 [9,13], so stage 0
  // runs B0 [9,11] and B1 [13,15].
  const ScheduleTimeline tl =
      simulate(PipelineSchedule(ScheduleKind::GPipe, 2, 2), {1.0, 2.0}, {2.0, 4.0});
  EXPECT_DOUBLE_EQ(tl.stages[1][3].end, 13.0);
  EXPECT_DOUBLE_EQ(tl.stages[0][3].start, 13.0);
  EXPECT_DOUBLE_EQ(tl.makespan, 15.0);
  EXPECT_DOUBLE_EQ(tl.bubble_fraction(0), 1.0 - 6.0 / 15.0);
  EXPECT_DOUBLE_EQ(tl.bubble_fraction(1), 1.0 - 12.0 / 15.0);
  EXPECT_NE(error_of([] {
              simulate(PipelineSchedule(ScheduleKind::GPipe, 2, 2), std::vector<double>{1.0},
                       std::vector<double>{1.0});
            }).find("one forward and one backward cost per stage"),
            std::string::npos);
}

TEST(PipelineSchedule, ValidateRejectsAMissingOrRepeatedMicroBatch) {
  const PipelineSchedule missing("custom", {{fwd(0), bwd(0)}, {fwd(0), bwd(0), fwd(1), bwd(1)}}, 2);
  EXPECT_NE(error_of([&] { missing.validate(); }).find("stage 0 never forwards micro-batch 1"),
            std::string::npos);
  const PipelineSchedule twice("custom", {{fwd(0), fwd(0), bwd(0)}}, 1);
  EXPECT_NE(error_of([&] { twice.validate(); }).find("stage 0 runs F0 twice"), std::string::npos);
  const PipelineSchedule early("custom", {{bwd(0), fwd(0)}}, 1);
  EXPECT_NE(error_of([&] { early.validate(); }).find("runs B0 before forwarding micro-batch 0"),
            std::string::npos);
  const PipelineSchedule outside("custom", {{fwd(0), bwd(0), fwd(2), bwd(2)}}, 2);
  EXPECT_NE(error_of([&] { outside.validate(); }).find("F2, outside micro-batches 0..1"),
            std::string::npos);
}

TEST(PipelineSchedule, ValidateRejectsNeighboursInDifferentOrders) {
  const PipelineSchedule s("custom",
                           {{fwd(0), fwd(1), bwd(0), bwd(1)}, {fwd(1), fwd(0), bwd(0), bwd(1)}}, 2);
  const std::string e = error_of([&] { s.validate(); });
  EXPECT_NE(e.find("stages 0 and 1 run forwards in different orders ([0, 1] vs [1, 0])"),
            std::string::npos)
      << e;
}

TEST(PipelineSchedule, ValidateFindsADeadlock) {
  // Stage 0 wants B0 before it sends F1, but stage 1 can only backward micro-batch 0 after
  // forwarding micro-batch 1.
  const PipelineSchedule s("custom",
                           {{fwd(0), bwd(0), fwd(1), bwd(1)}, {fwd(0), fwd(1), bwd(0), bwd(1)}}, 2);
  const std::string e = error_of([&] { s.validate(); });
  EXPECT_NE(e.find("deadlocks"), std::string::npos) << e;
  EXPECT_NE(e.find("stage 0 waits at B0 for B0 of stage 1"), std::string::npos) << e;
  EXPECT_NE(e.find("stage 1 waits at F1 for F1 of stage 0"), std::string::npos) << e;
}

TEST(PipelineSchedule, BadArgumentsAreErrors) {
  EXPECT_NE(error_of([] {
              PipelineSchedule(ScheduleKind::GPipe, 0, 4);
            }).find("number of stages must be positive"),
            std::string::npos);
  EXPECT_NE(error_of([] {
              PipelineSchedule(ScheduleKind::OneFOneB, 2, 0);
            }).find("number of micro-batches must be positive"),
            std::string::npos);
  EXPECT_EQ(parse_schedule_kind("1f1b"), ScheduleKind::OneFOneB);
  EXPECT_EQ(parse_schedule_kind("gpipe"), ScheduleKind::GPipe);
  EXPECT_NE(error_of([] { parse_schedule_kind("zb"); }).find("valid: gpipe, 1f1b"),
            std::string::npos);
}

}  // namespace
}  // namespace strata::parallel
