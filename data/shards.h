#pragma once
// Token shards on disk, as `strata prepare` writes them and training reads them.
//
// DIR/manifest.json        format, tokenizer fingerprint, counts, per-file checksums
// DIR/shard_00000.bin ...  flat little-endian ids (uint16 when the vocabulary fits, else uint32);
//                          the shards concatenated form one stream, documents may cross shards
// DIR/documents.idx        little-endian uint64: the start of each document in the stream, then
//                          the total token count (num_documents + 1 entries)
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "data/documents.h"
#include "data/hash.h"

namespace strata::data {

// Smallest id width that holds every id of a vocabulary: 2 bytes up to 65536 ids, else 4.
int id_bytes_for_vocab(int64_t vocab_size);

struct ShardStats {
  uint64_t documents = 0, tokens = 0, input_bytes = 0, invalid_utf8 = 0, bad_json_lines = 0,
           empty_files = 0;
};

// Streams documents into shards; memory is one write buffer, whatever the corpus size.
class ShardWriter {
 public:
  // id_bytes 0 picks the width from the vocabulary; a forced width too small for the vocabulary
  // is an error.
  ShardWriter(std::string dir, std::string tokenizer_fingerprint, int64_t vocab_size,
              int64_t shard_tokens = int64_t(1) << 27, int id_bytes = 0);
  ~ShardWriter();
  ShardWriter(const ShardWriter&) = delete;
  ShardWriter& operator=(const ShardWriter&) = delete;

  void begin_document();
  void append(const int32_t* ids, size_t n);
  // Writes the last shard, the index and the manifest (with `stats`' input counts).
  void finish(const ShardStats& input_stats);
  uint64_t tokens() const { return total_tokens_; }
  uint64_t documents() const { return doc_starts_count_; }

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
  uint64_t total_tokens_ = 0;
  uint64_t doc_starts_count_ = 0;
};

struct ShardManifest {
  std::string tokenizer_fingerprint;
  int64_t vocab_size = 0;
  int id_bytes = 0;
  ShardStats stats;
  struct File {
    std::string name;
    uint64_t tokens = 0, bytes = 0, checksum = 0;
  };
  std::vector<File> shards;
  File index;
};

ShardManifest read_manifest(const std::string& dir);

// Memory-maps a prepared directory. With verify (the default) every file's checksum is checked
// on open; a mismatch is an error naming the file and telling the user to re-run prepare.
class ShardedDataset final : public TokenDocuments {
 public:
  explicit ShardedDataset(const std::string& dir, bool verify = true);
  ~ShardedDataset() override;
  const ShardManifest& manifest() const { return manifest_; }
  // Errors, naming both, when the shards were made with another tokenizer.
  void require_tokenizer(const std::string& fingerprint) const;
  void read(int64_t begin, int64_t end, int32_t* out) const override;

 private:
  struct Mapping;
  std::string dir_;
  ShardManifest manifest_;
  std::vector<std::unique_ptr<Mapping>> maps_;
  std::vector<int64_t> shard_starts_;
};

}  // namespace strata::data
