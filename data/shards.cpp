#include "data/shards.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <bit>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "core/error.h"
#include "data/file_util.h"

namespace strata::data {
namespace fs = std::filesystem;

static_assert(std::endian::native == std::endian::little,
              "shards are little-endian and read without byte swapping");

int id_bytes_for_vocab(int64_t vocab_size) {
  return vocab_size <= 65536 ? 2 : 4;
}

namespace {
std::string shard_name(size_t i) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "shard_%05zu.bin", i);
  return buf;
}
constexpr const char* kIndexName = "documents.idx";
constexpr const char* kFormat = "strata-shards";
}  // namespace

// --- writer ------------------------------------------------------------------------------------

struct ShardWriter::Impl {
  std::string dir, fingerprint;
  int64_t vocab = 0, shard_tokens = 0;
  int id_bytes = 0;
  std::ofstream shard, index;
  Hasher64 shard_hash, index_hash;
  uint64_t shard_count_tokens = 0, index_bytes = 0;
  std::vector<ShardManifest::File> files;
  std::vector<char> buffer;

  void open_shard() {
    const std::string name = shard_name(files.size());
    shard.open(dir + "/" + name, std::ios::binary | std::ios::trunc);
    STRATA_CHECK(shard.good(), "prepare: cannot write '", dir, "/", name, "'");
    files.push_back({name, 0, 0, 0});
    shard_hash = Hasher64();
    shard_count_tokens = 0;
  }
  void close_shard() {
    if (!shard.is_open()) return;
    shard.close();
    STRATA_CHECK(!shard.fail(), "prepare: writing '", dir, "/", files.back().name, "' failed");
    files.back().tokens = shard_count_tokens;
    files.back().bytes = shard_count_tokens * uint64_t(id_bytes);
    files.back().checksum = shard_hash.digest();
  }
  void write_index(uint64_t start) {
    index.write(reinterpret_cast<const char*>(&start), 8);
    index_hash.update(&start, 8);
    index_bytes += 8;
  }
};

ShardWriter::ShardWriter(std::string dir, std::string fingerprint, int64_t vocab_size,
                         int64_t shard_tokens, int id_bytes)
    : impl_(std::make_unique<Impl>()) {
  STRATA_CHECK(vocab_size > 0, "prepare: vocabulary size ", vocab_size, ", expected > 0");
  STRATA_CHECK(id_bytes == 0 || id_bytes == 2 || id_bytes == 4, "prepare: id width ", id_bytes,
               " bytes, expected 2 or 4 (0 picks from the vocabulary)");
  const int needed = id_bytes_for_vocab(vocab_size);
  STRATA_CHECK(id_bytes == 0 || id_bytes >= needed, "prepare: vocabulary of ", vocab_size,
               " ids does not fit in ", id_bytes, "-byte ids (uint16 holds 65536); use 4");
  STRATA_CHECK(shard_tokens > 0, "prepare: shard size ", shard_tokens, " tokens, expected > 0");
  impl_->dir = std::move(dir);
  impl_->fingerprint = std::move(fingerprint);
  impl_->vocab = vocab_size;
  impl_->shard_tokens = shard_tokens;
  impl_->id_bytes = id_bytes == 0 ? needed : id_bytes;
  std::error_code ec;
  fs::create_directories(impl_->dir, ec);
  STRATA_CHECK(!ec, "prepare: cannot create '", impl_->dir, "': ", ec.message());
  // A stale manifest must not describe the new shards if this run dies half way.
  fs::remove(impl_->dir + "/manifest.json", ec);
  for (size_t i = 0; fs::exists(impl_->dir + "/" + shard_name(i)); ++i)
    fs::remove(impl_->dir + "/" + shard_name(i), ec);
  impl_->index.open(impl_->dir + "/" + kIndexName, std::ios::binary | std::ios::trunc);
  STRATA_CHECK(impl_->index.good(), "prepare: cannot write '", impl_->dir, "/", kIndexName, "'");
}

ShardWriter::~ShardWriter() = default;

void ShardWriter::begin_document() {
  impl_->write_index(total_tokens_);
  ++doc_starts_count_;
}

void ShardWriter::append(const int32_t* ids, size_t n) {
  auto& m = *impl_;
  STRATA_CHECK(doc_starts_count_ > 0, "ShardWriter: append before begin_document");
  while (n > 0) {
    if (!m.shard.is_open() || int64_t(m.shard_count_tokens) >= m.shard_tokens) {
      m.close_shard();
      m.open_shard();
    }
    const size_t take = std::min<size_t>(n, size_t(m.shard_tokens - int64_t(m.shard_count_tokens)));
    m.buffer.resize(take * size_t(m.id_bytes));
    for (size_t i = 0; i < take; ++i) {
      const int32_t id = ids[i];
      STRATA_CHECK(id >= 0 && id < m.vocab, "prepare: token id ", id, " outside the vocabulary 0..",
                   m.vocab - 1);
      if (m.id_bytes == 2) {
        const uint16_t v = uint16_t(id);
        std::memcpy(m.buffer.data() + 2 * i, &v, 2);
      } else {
        const uint32_t v = uint32_t(id);
        std::memcpy(m.buffer.data() + 4 * i, &v, 4);
      }
    }
    m.shard.write(m.buffer.data(), std::streamsize(m.buffer.size()));
    m.shard_hash.update(m.buffer.data(), m.buffer.size());
    m.shard_count_tokens += take;
    total_tokens_ += take;
    ids += take;
    n -= take;
  }
}

void ShardWriter::finish(const ShardStats& input) {
  auto& m = *impl_;
  m.close_shard();
  m.write_index(total_tokens_);
  m.index.close();
  STRATA_CHECK(!m.index.fail(), "prepare: writing the document index failed");
  STRATA_CHECK(total_tokens_ > 0, "prepare: the inputs produced no tokens (all files empty?)");
  nlohmann::json j;
  j["format"] = kFormat;
  j["version"] = 1;
  j["tokenizer"] = {{"fingerprint", m.fingerprint}, {"vocab_size", m.vocab}};
  j["id_bytes"] = m.id_bytes;
  j["documents"] = doc_starts_count_;
  j["tokens"] = total_tokens_;
  j["input"] = {{"bytes", input.input_bytes},
                {"invalid_utf8_replaced", input.invalid_utf8},
                {"bad_json_lines", input.bad_json_lines},
                {"empty_files", input.empty_files}};
  for (const auto& f : m.files)
    j["shards"].push_back({{"file", f.name},
                           {"tokens", f.tokens},
                           {"bytes", f.bytes},
                           {"checksum", Hasher64::hex(f.checksum)}});
  j["index"] = {{"file", kIndexName},
                {"bytes", m.index_bytes},
                {"checksum", Hasher64::hex(m.index_hash.digest())}};
  // Written last and renamed into place: a manifest only ever describes complete shards.
  const std::string tmp = m.dir + "/manifest.json.tmp";
  {
    std::ofstream out(tmp, std::ios::trunc);
    out << j.dump(2) << "\n";
    STRATA_CHECK(out.good(), "prepare: cannot write '", tmp, "'");
  }
  fs::rename(tmp, m.dir + "/manifest.json");
}

// --- manifest ----------------------------------------------------------------------------------

ShardManifest read_manifest(const std::string& dir) {
  const std::string path = dir + "/manifest.json";
  STRATA_CHECK(fs::exists(path), "shards: no manifest at '", path,
               "'; is this a directory written by `strata prepare`?");
  auto j = nlohmann::json::parse(read_file(path, "shards"), nullptr, false);
  STRATA_CHECK(!j.is_discarded() && j.value("format", "") == kFormat, "shards: '", path,
               "' is not a Strata shard manifest; re-run `strata prepare`");
  ShardManifest m;
  try {
    STRATA_CHECK(j.at("version").get<int>() == 1, "shards: '", path, "' has format version ",
                 j.at("version").get<int>(), ", expected 1");
    m.tokenizer_fingerprint = j.at("tokenizer").at("fingerprint").get<std::string>();
    m.vocab_size = j.at("tokenizer").at("vocab_size").get<int64_t>();
    m.id_bytes = j.at("id_bytes").get<int>();
    m.stats.documents = j.at("documents").get<uint64_t>();
    m.stats.tokens = j.at("tokens").get<uint64_t>();
    const auto& in = j.at("input");
    m.stats.input_bytes = in.at("bytes").get<uint64_t>();
    m.stats.invalid_utf8 = in.at("invalid_utf8_replaced").get<uint64_t>();
    m.stats.bad_json_lines = in.at("bad_json_lines").get<uint64_t>();
    m.stats.empty_files = in.at("empty_files").get<uint64_t>();
    auto file = [](const nlohmann::json& f) {
      return ShardManifest::File{f.at("file").get<std::string>(), f.value("tokens", uint64_t(0)),
                                 f.at("bytes").get<uint64_t>(),
                                 std::stoull(f.at("checksum").get<std::string>(), nullptr, 16)};
    };
    for (const auto& f : j.at("shards")) m.shards.push_back(file(f));
    m.index = file(j.at("index"));
  } catch (const nlohmann::json::exception& e) {
    STRATA_FAIL("shards: '", path, "' is malformed (", e.what(), "); re-run `strata prepare`");
  }
  STRATA_CHECK(m.id_bytes == 2 || m.id_bytes == 4, "shards: '", path, "' has id width ", m.id_bytes,
               ", expected 2 or 4");
  STRATA_CHECK(m.id_bytes >= id_bytes_for_vocab(m.vocab_size), "shards: '", path,
               "': a vocabulary of ", m.vocab_size, " ids does not fit ", m.id_bytes, "-byte ids");
  return m;
}

// --- reader ------------------------------------------------------------------------------------

struct ShardedDataset::Mapping {
  const unsigned char* data = nullptr;
  size_t size = 0;
  Mapping(const std::string& path, uint64_t expected_bytes) {
    const int fd = ::open(path.c_str(), O_RDONLY);
    STRATA_CHECK(fd >= 0, "shards: cannot open '", path, "'; re-run `strata prepare`");
    struct stat st {};
    ::fstat(fd, &st);
    size = size_t(st.st_size);
    if (size != expected_bytes) {
      ::close(fd);
      STRATA_FAIL("shards: '", path, "' has ", size, " bytes, the manifest says ", expected_bytes,
                  " (truncated or overwritten); re-run `strata prepare`");
    }
    if (size > 0) {
      void* p = ::mmap(nullptr, size, PROT_READ, MAP_SHARED, fd, 0);
      ::close(fd);
      STRATA_CHECK(p != MAP_FAILED, "shards: cannot map '", path, "'");
      data = static_cast<const unsigned char*>(p);
    } else {
      ::close(fd);
    }
  }
  ~Mapping() {
    if (data) ::munmap(const_cast<unsigned char*>(data), size);
  }
  Mapping(const Mapping&) = delete;
  Mapping& operator=(const Mapping&) = delete;
  void verify(const std::string& path, uint64_t expected) const {
    Hasher64 h;
    h.update(data, size);
    STRATA_CHECK(h.digest() == expected, "shards: checksum mismatch in '", path, "' (got ",
                 Hasher64::hex(h.digest()), ", manifest says ", Hasher64::hex(expected),
                 "): the file is corrupt or from another run; re-run `strata prepare`");
  }
};

ShardedDataset::ShardedDataset(const std::string& dir, bool verify)
    : dir_(dir), manifest_(read_manifest(dir)) {
  const std::string index_path = dir + "/" + manifest_.index.name;
  Mapping index(index_path, manifest_.index.bytes);
  if (verify) index.verify(index_path, manifest_.index.checksum);
  const size_t n = index.size / 8;
  STRATA_CHECK(n == manifest_.stats.documents + 1, "shards: '", index_path, "' holds ", n,
               " entries, expected ", manifest_.stats.documents + 1, "; re-run `strata prepare`");
  starts_.resize(n);
  std::memcpy(starts_.data(), index.data, n * 8);
  int64_t total = 0;
  for (const auto& f : manifest_.shards) {
    const std::string path = dir + "/" + f.name;
    maps_.push_back(std::make_unique<Mapping>(path, f.bytes));
    if (verify) maps_.back()->verify(path, f.checksum);
    shard_starts_.push_back(total);
    total += int64_t(f.bytes / uint64_t(manifest_.id_bytes));
  }
  shard_starts_.push_back(total);
  STRATA_CHECK(total == int64_t(manifest_.stats.tokens) && starts_.back() == total &&
                   std::is_sorted(starts_.begin(), starts_.end()),
               "shards: '", dir, "' is inconsistent (", total, " tokens in shards, manifest says ",
               manifest_.stats.tokens, "); re-run `strata prepare`");
}

ShardedDataset::~ShardedDataset() = default;

void ShardedDataset::require_tokenizer(const std::string& fingerprint) const {
  STRATA_CHECK(fingerprint == manifest_.tokenizer_fingerprint, "data: shards in '", dir_,
               "' were made with tokenizer ", manifest_.tokenizer_fingerprint,
               " but the run uses tokenizer ", fingerprint,
               "; re-run `strata prepare` with this tokenizer or use the matching one");
}

void ShardedDataset::read(int64_t begin, int64_t end, int32_t* out) const {
  STRATA_CHECK(begin >= 0 && begin <= end && end <= num_tokens(), "shards: read [", begin, ", ",
               end, ") outside the stream of ", num_tokens(), " tokens");
  auto s = size_t(std::upper_bound(shard_starts_.begin(), shard_starts_.end(), begin) -
                  shard_starts_.begin()) -
           1;
  while (begin < end) {
    while (shard_starts_[s + 1] <= begin) ++s;
    const int64_t stop = std::min(end, shard_starts_[s + 1]);
    const unsigned char* base = maps_[s]->data;
    const int64_t off = begin - shard_starts_[s];
    if (manifest_.id_bytes == 2) {
      for (int64_t i = 0; i < stop - begin; ++i) {
        uint16_t v;
        std::memcpy(&v, base + 2 * (off + i), 2);
        *out++ = v;
      }
    } else {
      std::memcpy(out, base + 4 * off, size_t(stop - begin) * 4);
      out += stop - begin;
    }
    begin = stop;
  }
}

}  // namespace strata::data
