#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

#include "core/error.h"
#include "data/tokenizer.h"

namespace strata::data {
namespace {
namespace fs = std::filesystem;

// Each test writes its own file: ctest runs the tests of this binary as parallel processes.
std::string small_corpus() {
  const auto path = fs::temp_directory_path() /
                    (std::string("strata_tokenizer_corpus_") +
                     ::testing::UnitTest::GetInstance()->current_test_info()->name() + ".txt");
  std::ofstream out(path);
  // Pseudo-words from syllables: enough distinct pieces for a few hundred vocabulary entries.
  const char* syllables[] = {"ka",  "to", "re", "mi",  "su",  "lan", "gor", "ve", "pli", "dra",
                             "shu", "ne", "ox", "qui", "zam", "te",  "bro", "fi", "wu",  "yel"};
  uint32_t state = 12345;
  for (int line = 0; line < 4000; ++line) {
    for (int w = 0; w < 10; ++w) {
      state = state * 1664525u + 1013904223u;
      const int len = 1 + int((state >> 28) % 3);
      for (int k = 0; k < len; ++k) out << syllables[(state >> (4 * k + 8)) % 20];
      out << (w == 0 ? " The " : " ");
    }
    out << "model learns.\n";
  }
  return path.string();
}

TEST(Tokenizer, BytesRoundTripAndSpecials) {
  const auto tok = load_tokenizer_bytes(byte_tokenizer_file(), "bytes");
  EXPECT_EQ(tok->vocab_size(), 260);
  const std::string text = "h\xC3\xA9llo\n\x01";
  const auto ids = tok->encode(text);
  EXPECT_EQ(ids.size(), text.size());
  EXPECT_EQ(ids[1], 0xC3);
  EXPECT_EQ(tok->decode(ids), text);
  EXPECT_TRUE(tok->is_special(kByteEos));
  EXPECT_FALSE(tok->is_special(255));
  EXPECT_EQ(tok->fingerprint().rfind("bytes:", 0), 0u);
}

TEST(Tokenizer, UnigramT5StyleHasSentinelsCountingDownFromTheTop) {
  const auto out = (fs::temp_directory_path() / "strata_t5.tok").string();
  TokenizerTrainOptions o;
  o.inputs = {small_corpus()};
  o.kind = "unigram";
  o.vocab = 200;
  o.threads = 1;
  o.out = out;
  const auto tok = train_tokenizer(o);
  const auto& s = tok->special();
  EXPECT_EQ(tok->vocab_size(), 200);
  EXPECT_EQ(s.pad, 0);
  EXPECT_EQ(s.eos, 1);
  EXPECT_EQ(s.unk, 2);
  EXPECT_EQ(s.num_sentinels, 100);
  EXPECT_EQ(s.sentinel(0), 199);
  EXPECT_EQ(s.sentinel(99), 100);
  EXPECT_EQ(tok->decode(std::vector<int32_t>{199, 198}), "<extra_id_0><extra_id_1>");
  const std::string text = "the model learns from data";
  const auto ids = tok->encode(text);
  for (int32_t id : ids) EXPECT_LT(id, 100);
  EXPECT_EQ(tok->decode(ids), text);
  // Loading the file gives the same tokenizer and fingerprint.
  const auto again = load_tokenizer(out);
  EXPECT_EQ(again->fingerprint(), tok->fingerprint());
  EXPECT_EQ(again->encode(text), ids);
  EXPECT_EQ(tok->fingerprint().rfind("unigram:", 0), 0u);
  fs::remove(out);
}

TEST(Tokenizer, BpeBertStyleHasBertSpecials) {
  const auto out = (fs::temp_directory_path() / "strata_bert.tok").string();
  TokenizerTrainOptions o;
  o.inputs = {small_corpus()};
  o.kind = "bpe";
  o.vocab = 120;
  o.threads = 1;
  o.out = out;
  const auto tok = train_tokenizer(o);
  const auto& s = tok->special();
  EXPECT_EQ(s.pad, 0);
  EXPECT_EQ(s.unk, 1);
  EXPECT_EQ(s.cls, 2);
  EXPECT_EQ(s.sep, 3);
  EXPECT_EQ(s.mask, 4);
  EXPECT_EQ(s.num_sentinels, 0);
  EXPECT_EQ(tok->vocab_size(), 120);
  // Crammed BERT lowercases.
  EXPECT_EQ(tok->decode(tok->encode("The Model")), "the model");
  fs::remove(out);
}

TEST(Tokenizer, BadFilesAreErrors) {
  EXPECT_THROW(load_tokenizer("/nonexistent/strata.tok"), Error);
  EXPECT_THROW(load_tokenizer_bytes("strata-tokenizer 1\nkind=bytes\npayload=5\n\nab", "x"), Error);
  EXPECT_THROW(load_tokenizer_bytes("not a model", "x"), Error);
  TokenizerTrainOptions o;
  o.kind = "wordpiece";
  o.out = "/tmp/x";
  EXPECT_THROW(train_tokenizer(o), Error);
}

}  // namespace
}  // namespace strata::data
