// Schedules at key steps against the formulas written out independently here, against torch's
// schedulers (tests/fixtures/optim.h5), and driven by every kind of clock.
#include <gtest/gtest.h>

#include <cmath>

#include "core/error.h"
#include "core/io/hdf5_file.h"
#include "optim/schedule.h"

namespace strata::optim {
namespace {

const double kPi = std::acos(-1.0);

TEST(Schedule, NanoT5CosineAtKeySteps) {
  // nanoT5 defaults: base 2e-2, warmup 10k, total 65,536, final_cosine 1e-5.
  WarmupCosine s(2e-2, 10'000, 65'536, 1e-5);
  EXPECT_DOUBLE_EQ(s.lr_at(0), 1e-2);             // factor 0.5
  EXPECT_DOUBLE_EQ(s.lr_at(5'000), 2e-2 * 0.75);  // halfway through warm-up
  EXPECT_DOUBLE_EQ(s.lr_at(10'000), 2e-2);        // warm-up and cosine join at base
  EXPECT_DOUBLE_EQ(s.lr_at(9'999), 2e-2 * (0.5 + 0.5 * 9'999 / 10'000.0));
  const double mid = 10'000 + (65'536 - 10'000) / 2.0;
  EXPECT_NEAR(s.lr_at(mid), 1e-5 + (2e-2 - 1e-5) * 0.5, 1e-15);
  const double x = 30'000;
  EXPECT_NEAR(s.lr_at(x), 1e-5 + (2e-2 - 1e-5) * 0.5 * (1 + std::cos(kPi * (x - 10'000) / 55'536)),
              1e-15);
  EXPECT_EQ(s.lr_at(65'536), 1e-5);  // exactly the floor at the end
  EXPECT_EQ(s.lr_at(70'000), 1e-5);  // and after it (torch's cosine would climb back)
  EXPECT_GT(s.lr_at(65'535), 1e-5);
  EXPECT_THROW(s.lr_at(-1), Error);
  EXPECT_THROW(WarmupCosine(2e-2, 100, 100, 0), Error);
}

TEST(Schedule, LegacyInverseSqrtAtKeySteps) {
  InverseSqrtLegacy s(65'536);
  const double n1 = std::ceil(65'536 * 0.9);  // 58,983
  EXPECT_EQ(s.cooldown_start(), n1);
  EXPECT_EQ(s.lr_at(0), 1e-2);
  EXPECT_EQ(s.lr_at(1), 1e-2);
  EXPECT_EQ(s.lr_at(10'000), 1e-2);  // 1/sqrt(1e4) = 1e-2
  EXPECT_DOUBLE_EQ(s.lr_at(40'000), 1.0 / std::sqrt(40'000.0));
  EXPECT_DOUBLE_EQ(s.lr_at(n1), 1.0 / std::sqrt(n1));
  const double mid = n1 + (65'536 - n1) / 2;
  EXPECT_NEAR(s.lr_at(mid), 0.5 / std::sqrt(n1), 1e-15);
  EXPECT_EQ(s.lr_at(65'536), 0.0);
  EXPECT_EQ(s.lr_at(1e9), 0.0);
}

TEST(Schedule, CrammedBudgetOneCycleTriangle) {
  BudgetOneCycle s(1e-3);  // T = 2e6 fake steps
  EXPECT_EQ(s.lr_at(0), 0.0);
  EXPECT_DOUBLE_EQ(s.lr_at(500'000), 1e-3 * 0.5);
  EXPECT_EQ(s.lr_at(1'000'000), 1e-3);  // the peak at half the budget
  EXPECT_DOUBLE_EQ(s.lr_at(1'500'000), 1e-3 * (2 - 1.5));
  for (double x : {123'457.0, 999'999.0, 1'000'001.0, 1'999'999.0})
    EXPECT_EQ(s.lr_at(x), 1e-3 * (x < 1e6 ? x / 1e6 : 2 - x / 1e6)) << x;
  EXPECT_EQ(s.lr_at(2'000'000), 0.0);
  EXPECT_EQ(s.lr_at(3'000'000), 0.0);
}

TEST(Schedule, NtngCosineBudgetAtKeySteps) {
  CosineBudget s(2e-2, 1'000, 10'000);
  EXPECT_DOUBLE_EQ(s.lr_at(0), 1e-2);
  EXPECT_DOUBLE_EQ(s.lr_at(500), 2e-2 * 0.75);
  EXPECT_DOUBLE_EQ(s.lr_at(1'000), 2e-2);
  EXPECT_NEAR(s.lr_at(5'500), 2e-2 * 0.5, 1e-16);
  EXPECT_NEAR(s.lr_at(9'999), 2e-2 * std::max(1e-5, 0.5 * (1 + std::cos(kPi * 8'999 / 9'000))),
              1e-18);
  EXPECT_EQ(s.lr_at(10'000), 2e-2 * 1e-5);  // fully decayed to the relative floor
  EXPECT_EQ(s.lr_at(12'000), 2e-2 * 1e-5);
}

TEST(Schedule, FactoryNamesAndErrors) {
  ScheduleConfig c;
  c.base_lr = 1e-3, c.warmup_steps = 10, c.total_steps = 100;
  for (const char* n : {"cosine", "legacy", "budget-one-cycle", "cosine-budget", "constant"}) {
    c.name = n;
    EXPECT_EQ(make_schedule(c)->name(), n);
  }
  c.name = "cosin";
  try {
    make_schedule(c);
    FAIL();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("cosine-budget"), std::string::npos);
  }
}

TEST(Schedule, MatchesTorchSchedulers) {
  const auto f = io::H5File::open(STRATA_FIXTURE_DIR "/optim.h5", io::H5File::Mode::Read);
  WarmupCosine cos(
      f.attr_double("/schedules/cosine", "base_lr"), f.attr_double("/schedules/cosine", "warmup"),
      f.attr_double("/schedules/cosine", "total"), f.attr_double("/schedules/cosine", "final"));
  InverseSqrtLegacy leg(f.attr_double("/schedules/legacy", "total"));
  for (auto [sched, key] : {std::pair<const Schedule*, const char*>{&cos, "/schedules/cosine"},
                            {&leg, "/schedules/legacy"}}) {
    const auto ref = f.read(key).to_vector<double>();
    ASSERT_EQ(ref.size(), size_t(sched->total_steps()) + 1);
    for (size_t s = 0; s < ref.size(); ++s)
      EXPECT_NEAR(sched->lr_at(double(s)), ref[s], 1e-12 + 1e-9 * ref[s]) << key << " s=" << s;
  }
}

TEST(BudgetSchedule, StepClockMapsStepsExactly) {
  auto sched = std::make_shared<WarmupCosine>(1.0, 7, 97, 0.01);
  BudgetSchedule b(sched, ClockKind::steps, 97);
  Clock c(ClockKind::steps);
  for (int k = 0; k < 120; ++k) {
    EXPECT_EQ(b.schedule_step(c.elapsed()), double(k));
    EXPECT_EQ(b.lr(c), sched->lr_at(k));
    EXPECT_EQ(b.done(c), k >= 97);
    c.advance(128);
  }
  EXPECT_THROW(b.lr(Clock(ClockKind::tokens)), Error);
}

TEST(BudgetSchedule, TokenBudgetDecaysExactlyAtItsEnd) {
  // 1,000 tokens per step, budget 50,500 tokens, nominal axis 1,000 steps.
  BudgetSchedule b(std::make_shared<BudgetOneCycle>(1e-3, 1'000), ClockKind::tokens, 50'500);
  Clock c(ClockKind::tokens);
  double peak = 0;
  while (!b.done(c)) {
    peak = std::max(peak, b.lr(c));
    c.advance(1'000);
  }
  EXPECT_EQ(c.state().steps, 51);
  EXPECT_EQ(b.lr(c), 0.0);
  EXPECT_NEAR(peak, 1e-3, 2e-5);
  EXPECT_EQ(b.schedule_step(25'250), 500);
  EXPECT_EQ(b.schedule_step(25'249), 499);  // NTNG's int() truncation
  BudgetSchedule exact(std::make_shared<BudgetOneCycle>(1e-3, 1'000), ClockKind::tokens, 50'500,
                       false);
  EXPECT_DOUBLE_EQ(exact.schedule_step(25'249), 25'249.0 * 1'000 / 50'500);
}

TEST(BudgetSchedule, ReferenceTimeClockFollowsTheTable) {
  // Crammed BERT: budget-one-cycle over 2e6 fake steps of a 24 h RST budget, charged per
  // 128-sequence micro-batch at 16 layers.
  const auto table = ReferenceTimeTable::bert_rtx3090();
  EXPECT_EQ(table.seconds(16), 0.2253);
  EXPECT_EQ(table.seconds(7), 0.01052);  // NTNG's literal entry
  EXPECT_EQ(ReferenceTimeTable::bert_rtx3090(true).seconds(7), 0.1052);
  EXPECT_THROW(table.seconds(17), Error);
  EXPECT_EQ(ReferenceTimeTable::t5_a100_batch144().seconds(12), 1.031);

  const double budget = 24 * 3600.0;
  BudgetSchedule b(std::make_shared<BudgetOneCycle>(1e-3), ClockKind::reference_seconds, budget);
  Clock c(ClockKind::reference_seconds);
  EXPECT_THROW(c.advance(0, 0.0), Error);
  int64_t micro = 0;
  while (!b.done(c)) {
    c.advance(128 * 128, table.seconds(16));
    ++micro;
  }
  EXPECT_EQ(micro, 383'489);  // ALGORITHMS.md 2.3: 24 h is about 383,488 micro-batches
  EXPECT_EQ(b.lr(c), 0.0);
  ClockState half;
  half.reference_seconds = budget / 2;
  c.load_state(half);
  EXPECT_EQ(b.lr(c), 1e-3);
}

TEST(Clock, WallSecondsAccumulateAcrossResume) {
  double now = 100.0;
  Clock c(ClockKind::seconds, [&] { return now; });
  EXPECT_EQ(c.elapsed(), 0.0);
  now = 130.0;
  c.advance(10);
  EXPECT_EQ(c.elapsed(), 30.0);
  const ClockState saved = c.state();
  EXPECT_EQ(saved.seconds, 30.0);
  EXPECT_EQ(saved.steps, 1);
  EXPECT_EQ(saved.tokens, 10);
  now = 1000.0;  // a new process starts later
  Clock d(ClockKind::seconds, [&] { return now; });
  d.load_state(saved);
  now = 1005.0;
  EXPECT_EQ(d.elapsed(), 35.0);
  EXPECT_EQ(parse_clock_kind("rst"), ClockKind::reference_seconds);
  EXPECT_EQ(clock_kind_name(ClockKind::tokens), "tokens");
  EXPECT_THROW(parse_clock_kind("hours"), Error);
}

TEST(Clock, FlopClockCountsChargedFlops) {
  Clock c(ClockKind::flops);
  EXPECT_THROW(c.advance(10, 0.0, 0.0), Error);  // a FLOP clock step must charge FLOPs
  EXPECT_THROW(c.advance(10, 0.0, -1.0), Error);
  c.advance(10, 0.0, 1.5e9);
  c.advance(10, 0.0, 2.5e9);
  EXPECT_EQ(c.elapsed(), 4e9);
  EXPECT_EQ(c.state().flops, 4e9);
  EXPECT_EQ(c.state().tokens, 20);
  Clock d(ClockKind::flops);
  d.load_state(c.state());
  EXPECT_EQ(d.elapsed(), 4e9);
  EXPECT_EQ(parse_clock_kind("flops"), ClockKind::flops);
  EXPECT_EQ(clock_kind_name(ClockKind::flops), "flops");
}

}  // namespace
}  // namespace strata::optim
