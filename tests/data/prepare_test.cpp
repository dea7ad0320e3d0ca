#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

#include "core/error.h"
#include "data/file_util.h"
#include "data/loader.h"
#include "data/prepare.h"
#include "data/utf8.h"

namespace strata::data {
namespace {
namespace fs = std::filesystem;

class TempDir {
 public:
  TempDir() {
    path_ =
        fs::temp_directory_path() /
        ("strata_data_test_" + std::to_string(::testing::UnitTest::GetInstance()->random_seed()) +
         "_" + ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::remove_all(path_);
    fs::create_directories(path_);
  }
  ~TempDir() { fs::remove_all(path_); }
  std::string file(const std::string& name, const std::string& content) const {
    const auto p = path_ / name;
    fs::create_directories(p.parent_path());
    std::ofstream(p, std::ios::binary) << content;
    return p.string();
  }
  std::string operator/(const std::string& name) const { return (path_ / name).string(); }

 private:
  fs::path path_;
};

std::unique_ptr<Tokenizer> bytes_tokenizer() {
  return load_tokenizer_bytes(byte_tokenizer_file(), "bytes");
}

std::string read_all_tokens_as_text(const ShardedDataset& d, const Tokenizer& tok, int64_t doc) {
  const auto s = d.starts();
  std::vector<int32_t> ids(size_t(s[size_t(doc) + 1] - s[size_t(doc)]));
  d.read(s[size_t(doc)], s[size_t(doc) + 1], ids.data());
  return tok.decode(ids);
}

TEST(Prepare, ByteRoundTripTextToShardsToText) {
  TempDir dir;
  std::string big;
  for (int i = 0; i < 3000; ++i) big += "line " + std::to_string(i) + " of a longer document\n";
  const std::vector<std::string> texts{"Hello, world.\nSecond line.\n",
                                       "caf\xC3\xA9 \xE2\x82\xAC\n", big};
  dir.file("in/a.txt", texts[0]);
  dir.file("in/b.txt", texts[1]);
  dir.file("in/sub/c.txt", texts[2]);
  dir.file("in/d.jsonl",
           "{\"text\": \"json doc \\u00e9\\n\", \"id\": 1}\n\n{\"text\": \"second\"}\n");
  const auto tok = bytes_tokenizer();
  PrepareOptions o;
  o.inputs = {dir / "in"};
  o.out = dir / "shards";
  o.shard_tokens = 1000;  // many shards; documents cross them
  o.chunk_bytes = 4096;   // many chunks per document
  o.progress = false;
  const auto stats = prepare(o, *tok);
  EXPECT_EQ(stats.documents, 5u);
  EXPECT_EQ(stats.invalid_utf8, 0u);
  ShardedDataset d(o.out);
  EXPECT_EQ(d.manifest().id_bytes, 2);
  EXPECT_EQ(d.manifest().tokenizer_fingerprint, tok->fingerprint());
  EXPECT_GT(d.manifest().shards.size(), 50u);
  ASSERT_EQ(d.num_documents(), 5);
  // Inputs are read in sorted path order: a.txt, b.txt, d.jsonl (2 docs), sub/c.txt.
  EXPECT_EQ(read_all_tokens_as_text(d, *tok, 0), texts[0]);
  EXPECT_EQ(read_all_tokens_as_text(d, *tok, 1), texts[1]);
  EXPECT_EQ(read_all_tokens_as_text(d, *tok, 2), "json doc \xC3\xA9\n");
  EXPECT_EQ(read_all_tokens_as_text(d, *tok, 3), "second");
  EXPECT_EQ(read_all_tokens_as_text(d, *tok, 4), texts[2]);
  d.require_tokenizer(tok->fingerprint());
  EXPECT_THROW(d.require_tokenizer("unigram:0123456789abcdef"), Error);

  // Same shards whatever the thread count.
  o.out = dir / "shards2";
  o.threads = 2;
  prepare(o, *tok);
  EXPECT_EQ(read_manifest(o.out).shards.back().checksum, d.manifest().shards.back().checksum);
}

TEST(Prepare, ChecksumFailureIsDetectedAndNamesTheShard) {
  TempDir dir;
  const auto tok = bytes_tokenizer();
  PrepareOptions o;
  o.inputs = {dir.file("a.txt", std::string(5000, 'x'))};
  o.out = dir / "s";
  o.shard_tokens = 2048;
  o.progress = false;
  prepare(o, *tok);
  EXPECT_NO_THROW(ShardedDataset{o.out});
  {
    std::fstream f(dir / "s/shard_00001.bin", std::ios::in | std::ios::out | std::ios::binary);
    f.seekp(100);
    f.put('y');
  }
  try {
    ShardedDataset d(o.out);
    FAIL() << "corruption not detected";
  } catch (const Error& e) {
    const std::string msg = e.what();
    EXPECT_NE(msg.find("shard_00001.bin"), std::string::npos) << msg;
    EXPECT_NE(msg.find("re-run `strata prepare`"), std::string::npos) << msg;
  }
  fs::resize_file(dir / "s/shard_00000.bin", 10);
  EXPECT_THROW(ShardedDataset{o.out}, Error);
}

TEST(Prepare, BadInputs) {
  TempDir dir;
  const auto tok = bytes_tokenizer();
  PrepareOptions o;
  o.out = dir / "s";
  o.progress = false;
  // A missing file names its path.
  o.inputs = {dir / "missing.txt"};
  try {
    prepare(o, *tok);
    FAIL();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("missing.txt"), std::string::npos);
  }
  // Only empty files: an error, not empty shards.
  o.inputs = {dir.file("empty.txt", "")};
  EXPECT_THROW(prepare(o, *tok), Error);
  // An empty file beside a good one is skipped and counted.
  o.inputs = {dir / "empty.txt", dir.file("good.txt", "ok\xFF\xFE bad bytes \xE2\x82")};
  const auto stats = prepare(o, *tok);
  EXPECT_EQ(stats.empty_files, 1u);
  EXPECT_EQ(stats.invalid_utf8, 3u);  // two stray bytes and a truncated sequence at the end
  ShardedDataset d(o.out);
  EXPECT_EQ(read_all_tokens_as_text(d, *tok, 0),
            "ok\xEF\xBF\xBD\xEF\xBF\xBD bad bytes \xEF\xBF\xBD");
  EXPECT_EQ(d.manifest().stats.invalid_utf8, 3u);
  // Bad JSONL lines are skipped and counted.
  o.inputs = {dir.file("x.jsonl", "{\"text\": \"fine\"}\nnot json\n{\"title\": 1}\n")};
  EXPECT_EQ(prepare(o, *tok).bad_json_lines, 2u);
  // A vocabulary too large for a forced 16-bit width.
  EXPECT_THROW(ShardWriter(dir / "w", "x:0", 70000, 1000, 2), Error);
  EXPECT_NO_THROW(ShardWriter(dir / "w", "x:0", 70000, 1000, 0));
  EXPECT_EQ(id_bytes_for_vocab(65536), 2);
  EXPECT_EQ(id_bytes_for_vocab(65537), 4);
}

TEST(Prepare, Uint32ShardsForLargeVocabularies) {
  TempDir dir;
  {
    ShardWriter w(dir / "s", "test:1", 100000, 3);
    w.begin_document();
    const std::vector<int32_t> ids{70000, 1, 99999, 5};
    w.append(ids.data(), ids.size());
    w.begin_document();
    w.append(ids.data(), 2);
    w.finish({});
  }
  ShardedDataset d(dir / "s");
  EXPECT_EQ(d.manifest().id_bytes, 4);
  std::vector<int32_t> out(6);
  d.read(0, 6, out.data());
  EXPECT_EQ(out, (std::vector<int32_t>{70000, 1, 99999, 5, 70000, 1}));
  EXPECT_EQ(d.num_documents(), 2);
}

TEST(Prepare, ShardsFeedTheLoader) {
  TempDir dir;
  const auto tok = bytes_tokenizer();
  std::string text;
  for (int i = 0; i < 200; ++i) text += "The quick brown fox jumps over the lazy dog. ";
  PrepareOptions o;
  o.inputs = {dir.file("a.txt", text), dir.file("b.txt", text)};
  o.out = dir / "s";
  o.progress = false;
  prepare(o, *tok);
  auto data = std::make_shared<ShardedDataset>(o.out);
  auto obj = std::make_shared<ByteLm>(ByteLmOptions{64}, *tok);
  Loader l(data, obj, {.seed = 1, .global_batch = 4});
  const Batch b = l.next();
  EXPECT_EQ(b.rows, 4);
  for (int64_t r = 0; r < 4; ++r)
    for (int64_t i = 0; i + 1 < 64; ++i)
      EXPECT_EQ(b.targets[size_t(r * 64 + i)], b.inputs[size_t(r * 64 + i + 1)]);
  for (int32_t id : b.inputs) EXPECT_LT(id, 256);
}

TEST(Utf8, RepairIsIndependentOfChunking) {
  const std::string text =
      "a\xC3\xA9"
      "b\xE2\x82\xAC"
      "c\xF0\x9F\x98\x80"
      "d\xED\xA0\x80"
      "e\xC0\xAF"
      "f";
  uint64_t whole_count = 0;
  const std::string whole = repair_utf8(text, &whole_count);
  EXPECT_EQ(whole_count, 5u);  // surrogate: 3 bytes; overlong C0 AF: 2 bytes
  for (size_t chunk = 1; chunk < 6; ++chunk) {
    Utf8Repair r;
    std::string out;
    for (size_t i = 0; i < text.size(); i += chunk)
      r.feed(std::string_view(text).substr(i, chunk), out);
    r.finish(out);
    EXPECT_EQ(out, whole) << chunk;
    EXPECT_EQ(r.replaced(), whole_count);
  }
}

}  // namespace
}  // namespace strata::data
