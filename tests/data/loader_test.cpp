#include <gtest/gtest.h>

#include <set>

#include "core/error.h"
#include "data/loader.h"

namespace strata::data {
namespace {

std::shared_ptr<const TokenDocuments> corpus(int docs = 40) {
  std::vector<std::vector<int32_t>> d;
  for (int i = 0; i < docs; ++i) {
    std::vector<int32_t> doc;
    for (int k = 0; k < 20 + (i * 37) % 90; ++k) doc.push_back(10 + (i * 101 + k) % 900);
    d.push_back(doc);
  }
  return std::make_shared<InMemoryDocuments>(d);
}

std::shared_ptr<const Objective> mlm() {
  SpecialIds s;
  s.pad = 0, s.unk = 1, s.cls = 2, s.sep = 3, s.mask = 4;
  return std::make_shared<MaskedLm>(MaskedLmOptions{16}, s, 1000);
}

TEST(Permutation, IsABijectionForManySizes) {
  for (uint64_t n : {1u, 2u, 3u, 7u, 64u, 100u, 1000u, 4097u}) {
    Permutation p(n, 99);
    std::set<uint64_t> seen;
    for (uint64_t i = 0; i < n; ++i) seen.insert(p(0, i));
    EXPECT_EQ(seen.size(), n);
    EXPECT_EQ(*seen.rbegin(), n - 1);
  }
  Permutation p(1000, 5);
  int same = 0, moved = 0;
  for (uint64_t i = 0; i < 1000; ++i) {
    same += p(0, i) == p(1, i);
    moved += p(0, i) != i;
  }
  EXPECT_LT(same, 50);  // epochs get different orders
  EXPECT_GT(moved, 900);
  EXPECT_EQ(Permutation(10, 1, false)(3, 7), 7u);
}

TEST(Loader, DeterministicForASeed) {
  LoaderOptions o{.seed = 11, .global_batch = 8};
  Loader a(corpus(), mlm(), o), b(corpus(), mlm(), o);
  o.seed = 12;
  Loader c(corpus(), mlm(), o);
  bool differs = false;
  for (int step = 0; step < 10; ++step) {
    const Batch x = a.next(), y = b.next(), z = c.next();
    EXPECT_EQ(x.inputs, y.inputs);
    EXPECT_EQ(x.targets, y.targets);
    differs |= x.inputs != z.inputs;
  }
  EXPECT_TRUE(differs);
  EXPECT_EQ(a.counter(), 80u);
}

TEST(Loader, UnionOfRanksIsTheSingleProcessBatchInOrder) {
  const auto docs = corpus();
  const auto obj = mlm();
  const int64_t B = 8;
  Loader single(docs, obj, {.seed = 3, .global_batch = B});
  std::vector<Batch> reference;
  for (int s = 0; s < 25; ++s) reference.push_back(single.next());  // crosses an epoch boundary
  ASSERT_GT(25 * B, single.num_samples());
  for (int64_t dp : {1, 2, 4}) {
    std::vector<std::unique_ptr<Loader>> ranks;
    for (int64_t r = 0; r < dp; ++r)
      ranks.push_back(std::make_unique<Loader>(
          docs, obj, LoaderOptions{.seed = 3, .global_batch = B, .dp_rank = r, .dp_size = dp}));
    for (int s = 0; s < 25; ++s) {
      std::vector<Batch> parts;
      for (auto& l : ranks) parts.push_back(l->next());
      for (int64_t row = 0; row < B; ++row) {
        const Batch& part = parts[size_t(row % dp)];
        const int64_t local = row / dp;
        ASSERT_EQ(part.rows, B / dp);
        EXPECT_EQ(part.global_index[size_t(local)], reference[size_t(s)].global_index[size_t(row)]);
        const auto a = part.input_row(local), b = reference[size_t(s)].input_row(row);
        EXPECT_TRUE(std::equal(a.begin(), a.end(), b.begin())) << "dp " << dp << " step " << s;
        const auto ta = part.target_row(local), tb = reference[size_t(s)].target_row(row);
        EXPECT_TRUE(std::equal(ta.begin(), ta.end(), tb.begin()));
      }
    }
  }
}

TEST(Loader, ResumeFromCounterAndReshardFourToTwo) {
  const auto docs = corpus();
  const auto obj = mlm();
  Loader single(docs, obj, {.seed = 9, .global_batch = 8, .prefetch = 3});
  std::vector<Batch> reference;
  for (int s = 0; s < 10; ++s) reference.push_back(single.next());

  // Run 4 steps on 4 ranks, save the counter, continue on 2 ranks.
  uint64_t saved = 0;
  {
    std::vector<std::unique_ptr<Loader>> four;
    for (int64_t r = 0; r < 4; ++r)
      four.push_back(std::make_unique<Loader>(
          docs, obj, LoaderOptions{.seed = 9, .global_batch = 8, .dp_rank = r, .dp_size = 4}));
    for (int s = 0; s < 4; ++s)
      for (auto& l : four) l->next();
    saved = four[0]->counter();
    for (auto& l : four) EXPECT_EQ(l->counter(), saved);
  }
  EXPECT_EQ(saved, 32u);
  Loader r0(docs, obj, {.seed = 9, .global_batch = 8, .dp_rank = 0, .dp_size = 2}, saved);
  Loader r1(docs, obj, {.seed = 9, .global_batch = 8, .dp_rank = 1, .dp_size = 2}, saved);
  Loader resumed(docs, obj, {.seed = 9, .global_batch = 8, .prefetch = 0}, saved);
  for (int s = 4; s < 10; ++s) {
    const Batch a = r0.next(), b = r1.next(), whole = resumed.next();
    EXPECT_EQ(whole.inputs, reference[size_t(s)].inputs);
    for (int64_t row = 0; row < 8; ++row) {
      const Batch& part = row % 2 == 0 ? a : b;
      const auto x = part.input_row(row / 2), y = reference[size_t(s)].input_row(row);
      EXPECT_TRUE(std::equal(x.begin(), x.end(), y.begin()));
    }
  }
}

TEST(Loader, EveryEpochVisitsEverySampleOnce) {
  const auto docs = corpus();
  Loader l(docs, mlm(), {.seed = 1, .global_batch = 4});
  const int64_t n = l.num_samples();
  std::multiset<int64_t> seen;
  while (int64_t(seen.size()) + 4 <= n) {
    const Batch b = l.next();
    seen.insert(b.sample.begin(), b.sample.end());
  }
  EXPECT_EQ(std::set<int64_t>(seen.begin(), seen.end()).size(), seen.size());
}

TEST(Loader, BadLayoutsAreErrors) {
  const auto docs = corpus(2);
  EXPECT_THROW(Loader(docs, mlm(), {.global_batch = 6, .dp_size = 4}), Error);
  EXPECT_THROW(Loader(docs, mlm(), {.global_batch = 8, .dp_rank = 4, .dp_size = 4}), Error);
  EXPECT_THROW(Loader(docs, mlm(), {.global_batch = 8}, 3), Error);
  SpecialIds s;
  s.eos = 1;
  // A sequence longer than the whole corpus cannot be served.
  EXPECT_THROW(Loader(docs, std::make_shared<CausalLm>(CausalLmOptions{100000}, s), {}), Error);
}

TEST(SampleSource, PackedStreamPutsSeparatorsBetweenDocuments) {
  auto docs = std::make_shared<InMemoryDocuments>(
      std::vector<std::vector<int32_t>>{{10, 11, 12}, {}, {20, 21}, {30, 31, 32, 33}});
  SampleSource s(docs, {4, 4, Packing::Packed, 3, 0});
  // stream: 10 11 12 3 | 3 20 21 3 | 30 31 32 33 | 3
  ASSERT_EQ(s.size(), 3);
  std::vector<int32_t> out(4);
  s.get(0, out.data());
  EXPECT_EQ(out, (std::vector<int32_t>{10, 11, 12, 3}));
  s.get(1, out.data());
  EXPECT_EQ(out, (std::vector<int32_t>{3, 20, 21, 3}));
  s.get(2, out.data());
  EXPECT_EQ(out, (std::vector<int32_t>{30, 31, 32, 33}));
}

TEST(SampleSource, DocumentModeNeverCrossesABoundary) {
  auto docs = std::make_shared<InMemoryDocuments>(
      std::vector<std::vector<int32_t>>{{10, 11, 12, 13, 14}, {20, 21}});
  SpecialIds sp;
  sp.eos = 1;
  sp.pad = 0;
  CausalLm obj({3, false}, sp);
  SampleSource s(docs, obj.layout());
  // doc 0 + eos = 6 tokens, 5 targets -> 2 windows; doc 1 + eos = 3 tokens -> 1 window.
  ASSERT_EQ(s.size(), 3);
  std::vector<int32_t> out(4);
  EXPECT_EQ(s.get(0, out.data()), 4);
  EXPECT_EQ(out, (std::vector<int32_t>{10, 11, 12, 13}));
  EXPECT_EQ(s.get(1, out.data()), 3);
  EXPECT_EQ(out, (std::vector<int32_t>{13, 14, 1, 0}));
  EXPECT_EQ(s.get(2, out.data()), 3);
  EXPECT_EQ(out, (std::vector<int32_t>{20, 21, 1, 0}));
  Batch b;
  b.resize(1, 3, 3, false);
  obj.build(out, 3, 0, 0, b, 0);
  EXPECT_EQ(b.targets, (std::vector<int32_t>{21, 1, kIgnoreIndex}));
}

}  // namespace
}  // namespace strata::data
