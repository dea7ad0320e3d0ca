// `strata tokenizer train|info|encode`: train a tokenizer, describe one, try one on text.
#include <iostream>

#include "core/error.h"
#include "data/tokenizer.h"
#include "launch/commands.h"

namespace strata::launch {
namespace {

int train(const Config& cfg) {
  data::TokenizerTrainOptions o;
  o.inputs = cfg.get<std::vector<std::string>>("input");
  o.kind = cfg.get<std::string>("kind");
  o.style = cfg.get<std::string>("style");
  o.vocab = cfg.get<int>("vocab");
  o.sentinels = cfg.get<int>("sentinels");
  o.max_sentences = cfg.get<int64_t>("max_sentences");
  o.character_coverage = cfg.get<double>("character_coverage");
  o.threads = cfg.get<int>("threads");
  o.out = cfg.get<std::string>("out");
  STRATA_CHECK(!o.out.empty(), "tokenizer train: --out FILE is required");
  const auto tok = data::train_tokenizer(o);
  std::cerr << "tokenizer: wrote " << o.out << " (" << tok->kind() << ", vocab "
            << tok->vocab_size() << ", " << tok->fingerprint() << ")\n";
  return 0;
}

int info(const Config& cfg) {
  const std::string path = cfg.get<std::string>("model");
  STRATA_CHECK(!path.empty(), "tokenizer info: --model FILE is required");
  const auto tok = data::load_tokenizer(path);
  const auto& s = tok->special();
  std::cout << "kind = " << tok->kind() << "\nvocab_size = " << tok->vocab_size()
            << "\nfingerprint = " << tok->fingerprint() << "\npad = " << s.pad
            << "\nunk = " << s.unk << "\ncls = " << s.cls << "\nsep = " << s.sep
            << "\nmask = " << s.mask << "\nbos = " << s.bos << "\neos = " << s.eos
            << "\nsentinels = " << s.num_sentinels;
  if (s.num_sentinels > 0)
    std::cout << " (<extra_id_0> = " << s.sentinel(0) << " ... <extra_id_" << s.num_sentinels - 1
              << "> = " << s.sentinel(s.num_sentinels - 1) << ")";
  std::cout << "\n";
  return 0;
}

int encode(const Config& cfg) {
  const std::string path = cfg.get<std::string>("model");
  STRATA_CHECK(!path.empty(), "tokenizer encode: --model FILE is required");
  const auto tok = data::load_tokenizer(path);
  const auto ids = tok->encode(cfg.get<std::string>("text"));
  for (size_t i = 0; i < ids.size(); ++i) std::cout << (i ? " " : "") << ids[i];
  std::cout << "\n" << tok->decode(ids) << "\n";
  return 0;
}

}  // namespace

Command make_tokenizer_command() {
  Command c;
  c.name = "tokenizer";
  c.summary = "train a tokenizer (train), describe one (info), or encode text (encode)";
  c.usage =
      "strata tokenizer train --input FILES... --kind unigram|bpe|bytes --vocab N --out FILE\n"
      "       strata tokenizer info --model FILE\n"
      "       strata tokenizer encode --model FILE --text TEXT";
  c.declare = [](po::options_description& o, po::positional_options_description& p) {
    o.add_options()("action", po::value<std::string>()->required(), "train, info or encode")(
        "input", po::value<std::vector<std::string>>()->multitoken(),
        "train: text / .jsonl files or directories")(
        "kind", po::value<std::string>()->default_value("unigram"),
        "train: unigram (T5), bpe (BERT-style) or bytes")(
        "style", po::value<std::string>()->default_value(""),
        "train: t5 (pad/eos/unk + sentinels on top) or bert ([PAD] [UNK] [CLS] [SEP] [MASK], "
        "lowercased); empty: t5 for unigram, bert for bpe")(
        "vocab", po::value<int>()->default_value(32000),
        "train: total vocabulary size, sentinels included")(
        "sentinels", po::value<int>()->default_value(100), "train: T5 sentinels (t5 style)")(
        "max_sentences", po::value<int64_t>()->default_value(2000000),
        "train: lines SentencePiece samples from the input")(
        "character_coverage", po::value<double>()->default_value(0.9995),
        "train: share of characters the vocabulary must cover")(
        "threads", po::value<int>()->default_value(0), "train: threads (0: all)")(
        "out", po::value<std::string>(), "train: output tokenizer file")(
        "model", po::value<std::string>(), "info/encode: tokenizer file")(
        "text", po::value<std::string>()->default_value(""), "encode: text to encode");
    p.add("action", 1);
  };
  c.run = [](const Config& cfg) {
    const std::string action = cfg.get<std::string>("action");
    if (action == "train") return train(cfg);
    if (action == "info") return info(cfg);
    if (action == "encode") return encode(cfg);
    const std::string hint = nearest(action, {"train", "info", "encode"});
    STRATA_FAIL("unknown action '", action, "', expected train, info or encode",
                hint.empty() ? "" : "; did you mean '" + hint + "'?");
  };
  return c;
}

}  // namespace strata::launch
