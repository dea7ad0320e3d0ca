#pragma once
// Tokenizers: one interface over SentencePiece models (T5-style unigram with sentinels, BERT-style
// vocabularies) and a byte-level tokenizer. Every tokenizer has a fingerprint, "kind:hash of the
// model bytes", stored with shards and checkpoints so data and model never silently disagree.
//
// Model file: a Strata tokenizer file is a short text header followed by the SentencePiece model
// bytes (none for `bytes`):
//   strata-tokenizer 1\nkind=unigram\nstyle=t5\nsentinels=100\npayload=<bytes>\n\n<payload>
// A raw SentencePiece .model (say T5's spiece.model) loads too: it gets BERT style when it holds a
// [MASK] piece, else T5 style with 100 sentinels appended above the model, as T5 does.
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace strata::data {

// Special ids; -1 where the tokenizer has none.
struct SpecialIds {
  int32_t pad = -1, unk = -1, cls = -1, sep = -1, mask = -1, bos = -1, eos = -1;
  // T5 sentinels count down from the top: <extra_id_0> is the highest id, <extra_id_k> = top - k.
  int32_t sentinel_top = -1;
  int32_t num_sentinels = 0;
  int32_t sentinel(int32_t k) const { return sentinel_top - k; }
  // The document separator an objective inserts between packed documents: EOS where there is
  // one (T5, causal), else [SEP] (BERT).
  int32_t separator() const { return eos >= 0 ? eos : sep; }
  // True for ids no objective may corrupt: pad, unk, cls, sep, mask, bos, eos and sentinels.
  bool is_special(int32_t id) const {
    if (id < 0) return false;
    if (id == pad || id == unk || id == cls || id == sep || id == mask || id == bos || id == eos)
      return true;
    return num_sentinels > 0 && id <= sentinel_top && id > sentinel_top - num_sentinels;
  }
};

class Tokenizer {
 public:
  virtual ~Tokenizer() = default;
  virtual std::vector<int32_t> encode(std::string_view text) const = 0;
  virtual std::string decode(std::span<const int32_t> ids) const = 0;
  virtual int32_t vocab_size() const = 0;
  virtual std::string_view kind() const = 0;  // "unigram", "bpe" or "bytes"
  const SpecialIds& special() const { return special_; }
  bool is_special(int32_t id) const { return special_.is_special(id); }
  // "kind:16 hex digits" of the whole model file.
  const std::string& fingerprint() const { return fingerprint_; }

 protected:
  SpecialIds special_;
  std::string fingerprint_;
};

// Loads a Strata tokenizer file or a raw SentencePiece model; errors name the path.
std::unique_ptr<Tokenizer> load_tokenizer(const std::string& path);
// Loads from the file's bytes (`what` names the source in errors).
std::unique_ptr<Tokenizer> load_tokenizer_bytes(std::string bytes, const std::string& what);

// The byte tokenizer needs no training: ids 0..255 are the bytes themselves, so a byte LM's
// targets are the text; specials sit above them.
inline constexpr int32_t kBytePad = 256, kByteEos = 257, kByteBos = 258, kByteMask = 259;
inline constexpr int32_t kByteVocab = 260;
std::string byte_tokenizer_file();

struct TokenizerTrainOptions {
  std::vector<std::string> inputs;  // files or directories (plain text, or .jsonl with "text")
  std::string kind = "unigram";     // unigram | bpe | bytes
  std::string style;                // t5 | bert; empty: t5 for unigram, bert for bpe
  int32_t vocab = 32000;            // total, sentinels and specials included
  int32_t sentinels = 100;          // t5 style only
  int64_t max_sentences = 2000000;  // SentencePiece samples this many lines
  double character_coverage = 0.9995;
  int threads = 0;  // 0: the OpenMP default
  std::string out;
};

// Trains a tokenizer and writes it to options.out; returns it loaded.
std::unique_ptr<Tokenizer> train_tokenizer(const TokenizerTrainOptions& options);

}  // namespace strata::data
