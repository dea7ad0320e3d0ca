// SentencePiece-backed tokenizers (unigram for T5, BPE or unigram with a BERT-style vocabulary)
// and their training.
#include <omp.h>
#include <sentencepiece_processor.h>
#include <sentencepiece_trainer.h>

#include <fstream>

#include "core/error.h"
#include "data/file_util.h"
#include "data/hash.h"
#include "data/tokenizer.h"
#include "data/tokenizer_backends.h"

namespace strata::data {

namespace {

class SentencePieceTokenizer final : public Tokenizer {
 public:
  SentencePieceTokenizer(std::string kind, std::string style, int32_t sentinels,
                         const std::string& payload, const std::string& file_bytes,
                         const std::string& what) {
    const auto status = sp_.LoadFromSerializedProto(payload);
    STRATA_CHECK(status.ok(), "tokenizer: ", what,
                 " is not a SentencePiece model: ", status.ToString());
    model_size_ = sp_.GetPieceSize();
    if (kind.empty()) {
      // A raw .model file: T5's spiece.model and its kin.
      kind = "unigram";
      style = sp_.PieceToId("[MASK]") != sp_.unk_id() ? "bert" : "t5";
      sentinels = style == "t5" ? 100 : 0;
    }
    kind_ = kind;
    auto id_of = [&](const char* piece) {
      const int id = sp_.PieceToId(piece);
      return id == sp_.unk_id() && std::string_view(piece) != sp_.IdToPiece(id) ? -1 : id;
    };
    if (style == "bert") {
      special_.pad = id_of("[PAD]");
      special_.unk = id_of("[UNK]");
      special_.cls = id_of("[CLS]");
      special_.sep = id_of("[SEP]");
      special_.mask = id_of("[MASK]");
      STRATA_CHECK(
          special_.pad >= 0 && special_.unk >= 0 && special_.sep >= 0 && special_.mask >= 0,
          "tokenizer: ", what, " has BERT style but lacks [PAD] [UNK] [SEP] or [MASK]");
      sentinels = 0;
    } else {
      STRATA_CHECK(style == "t5", "tokenizer: ", what, ": unknown style '", style,
                   "', expected t5 or bert");
      special_.pad = sp_.pad_id();
      special_.eos = sp_.eos_id();
      special_.unk = sp_.unk_id();
      special_.bos = sp_.bos_id();
    }
    // T5 appends its sentinels above the SentencePiece model: <extra_id_0> is the top id.
    num_sentinels_ = sentinels;
    special_.num_sentinels = sentinels;
    special_.sentinel_top = sentinels > 0 ? model_size_ + sentinels - 1 : -1;
    fingerprint_ = kind_ + ":" + Hasher64::hex(hash64(file_bytes));
  }

  std::vector<int32_t> encode(std::string_view text) const override {
    std::vector<int> ids;
    const auto status = sp_.Encode(text, &ids);
    STRATA_CHECK(status.ok(), "tokenizer: encode failed: ", status.ToString());
    return {ids.begin(), ids.end()};
  }

  std::string decode(std::span<const int32_t> ids) const override {
    // SentencePiece decodes runs of ordinary ids; sentinels are spelled out as T5 spells them.
    std::string out;
    std::vector<int> run;
    auto flush = [&] {
      if (run.empty()) return;
      std::string text;
      const auto status = sp_.Decode(run, &text);
      STRATA_CHECK(status.ok(), "tokenizer: decode failed: ", status.ToString());
      out += text;
      run.clear();
    };
    for (int32_t id : ids) {
      STRATA_CHECK(id >= 0 && id < vocab_size(), "tokenizer: decode got id ", id, ", expected 0..",
                   vocab_size() - 1);
      if (id >= model_size_) {
        flush();
        out += "<extra_id_" + std::to_string(special_.sentinel_top - id) + ">";
      } else {
        run.push_back(id);
      }
    }
    flush();
    return out;
  }

  int32_t vocab_size() const override { return model_size_ + num_sentinels_; }
  std::string_view kind() const override { return kind_; }

 private:
  sentencepiece::SentencePieceProcessor sp_;
  int32_t model_size_ = 0;
  int32_t num_sentinels_ = 0;
  std::string kind_;
};

// Feeds SentencePiece lines from our inputs, so JSONL and invalid UTF-8 are handled the same way
// as in `strata prepare`.
class LineIterator final : public sentencepiece::SentenceIterator {
 public:
  explicit LineIterator(std::vector<std::string> files) : input_(std::move(files)) { Next(); }
  bool done() const override { return done_; }
  void Next() override {
    while (true) {
      if (pos_ < piece_.size()) {
        size_t nl = piece_.find('\n', pos_);
        if (nl == std::string::npos) nl = piece_.size();
        value_.assign(piece_, pos_, nl - pos_);
        pos_ = nl + 1;
        if (value_.find_first_not_of(" \t\r") == std::string::npos) continue;
        return;
      }
      bool starts = false;
      if (!input_.next(piece_, starts)) {
        done_ = true;
        return;
      }
      pos_ = 0;
    }
  }
  const std::string& value() const override { return value_; }
  sentencepiece::util::Status status() const override { return {}; }

 private:
  TextInput input_;
  std::string piece_, value_;
  size_t pos_ = 0;
  bool done_ = false;
};

}  // namespace

std::unique_ptr<Tokenizer> make_sentencepiece_tokenizer(const std::string& kind,
                                                        const std::string& style, int32_t sentinels,
                                                        std::string payload,
                                                        const std::string& file_bytes,
                                                        const std::string& what) {
  return std::make_unique<SentencePieceTokenizer>(kind, style, sentinels, payload, file_bytes,
                                                  what);
}

std::unique_ptr<Tokenizer> train_tokenizer(const TokenizerTrainOptions& o) {
  STRATA_CHECK(!o.out.empty(), "tokenizer train: --out is required");
  std::string file;
  if (o.kind == "bytes") {
    file = byte_tokenizer_file();
  } else {
    STRATA_CHECK(o.kind == "unigram" || o.kind == "bpe", "tokenizer train: unknown --kind '",
                 o.kind, "', expected unigram, bpe or bytes");
    STRATA_CHECK(!o.inputs.empty(), "tokenizer train: --input is required for kind ", o.kind);
    const std::string style = o.style.empty() ? (o.kind == "bpe" ? "bert" : "t5") : o.style;
    STRATA_CHECK(style == "t5" || style == "bert", "tokenizer train: unknown --style '", style,
                 "', expected t5 or bert");
    const int32_t sentinels = style == "t5" ? o.sentinels : 0;
    STRATA_CHECK(sentinels >= 0, "tokenizer train: sentinels must be >= 0, got ", sentinels);
    const int32_t model_vocab = o.vocab - sentinels;
    STRATA_CHECK(model_vocab >= 16, "tokenizer train: --vocab ", o.vocab, " leaves ", model_vocab,
                 " pieces after ", sentinels, " sentinels; expected at least 16");
    std::unordered_map<std::string, std::string> args{
        {"model_type", o.kind},
        {"vocab_size", std::to_string(model_vocab)},
        {"character_coverage", std::to_string(o.character_coverage)},
        {"input_sentence_size", std::to_string(o.max_sentences)},
        {"shuffle_input_sentence", "true"},
        {"num_threads", std::to_string(o.threads > 0 ? o.threads : omp_get_max_threads())},
        {"minloglevel", "1"},
    };
    if (style == "t5") {
      // T5's layout: pad 0, eos 1, unk 2, no bos.
      args.insert({{"pad_id", "0"}, {"eos_id", "1"}, {"unk_id", "2"}, {"bos_id", "-1"}});
    } else {
      // Crammed BERT lowercases; [CLS] [SEP] [MASK] follow [PAD] [UNK] as ids 2, 3, 4.
      args.insert({{"pad_id", "0"},
                   {"unk_id", "1"},
                   {"bos_id", "-1"},
                   {"eos_id", "-1"},
                   {"pad_piece", "[PAD]"},
                   {"unk_piece", "[UNK]"},
                   {"control_symbols", "[CLS],[SEP],[MASK]"},
                   {"normalization_rule_name", "nmt_nfkc_cf"}});
    }
    LineIterator lines(expand_inputs(o.inputs));
    STRATA_CHECK(!lines.done(), "tokenizer train: the inputs hold no text");
    std::string model;
    const auto status = sentencepiece::SentencePieceTrainer::Train(args, &lines, &model);
    STRATA_CHECK(status.ok(), "tokenizer train: SentencePiece failed: ", status.ToString());
    file = "strata-tokenizer 1\nkind=" + o.kind + "\nstyle=" + style +
           "\nsentinels=" + std::to_string(sentinels) +
           "\npayload=" + std::to_string(model.size()) + "\n\n" + model;
  }
  {
    std::ofstream out(o.out, std::ios::binary | std::ios::trunc);
    STRATA_CHECK(out.good(), "tokenizer train: cannot write '", o.out, "'");
    out.write(file.data(), std::streamsize(file.size()));
    STRATA_CHECK(out.good(), "tokenizer train: write to '", o.out, "' failed");
  }
  return load_tokenizer_bytes(file, o.out);
}

}  // namespace strata::data
