// `strata prepare`: text and JSONL files to token shards.
#include "data/prepare.h"
#include "launch/commands.h"

namespace strata::launch {

Command make_prepare_command() {
  Command c;
  c.name = "prepare";
  c.summary = "tokenise text / JSONL files into token shards for training";
  c.usage = "strata prepare --input FILES_OR_DIRS... --tokenizer MODEL --out DIR";
  c.declare = [](po::options_description& o, po::positional_options_description&) {
    o.add_options()(
        "input", po::value<std::vector<std::string>>()->multitoken()->required(),
        "text files, .jsonl files (\"text\" field) or directories (read recursively, sorted)")(
        "tokenizer", po::value<std::string>()->required(),
        "tokenizer file from `strata tokenizer train` or a SentencePiece .model")(
        "out", po::value<std::string>()->required(), "output directory for shards and manifest")(
        "threads", po::value<int>()->default_value(0),
        "tokenising threads (0: OMP_NUM_THREADS or all cores); the shards do not depend on it")(
        "shard_tokens", po::value<int64_t>()->default_value(int64_t(1) << 27),
        "tokens per shard file")(
        "id_bytes", po::value<int>()->default_value(0),
        "bytes per token id: 2 or 4 (0: 2 when the vocabulary fits in uint16)")(
        "quiet", po::value<bool>()->default_value(false)->implicit_value(true),
        "no progress bar or report");
  };
  c.run = [](const Config& cfg) {
    const auto tokenizer = data::load_tokenizer(cfg.get<std::string>("tokenizer"));
    data::PrepareOptions o;
    o.inputs = cfg.get<std::vector<std::string>>("input");
    o.out = cfg.get<std::string>("out");
    o.threads = cfg.get<int>("threads");
    o.shard_tokens = cfg.get<int64_t>("shard_tokens");
    o.id_bytes = cfg.get<int>("id_bytes");
    o.progress = !cfg.get<bool>("quiet");
    data::prepare(o, *tokenizer);
    return 0;
  };
  return c;
}

}  // namespace strata::launch
