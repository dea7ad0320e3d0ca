// `strata generate`: continues a prompt with a decoder checkpoint written by `strata train`.
#include <iostream>

#include "core/ops/factory.h"
#include "data/tokenizer.h"
#include "launch/commands.h"
#include "models/generate.h"
#include "train/trainer.h"

namespace strata::launch {

Command make_generate_command() {
  Command c;
  c.name = "generate";
  c.summary = "continue a prompt with a trained decoder checkpoint (KV-cached decoding)";
  c.usage = "strata generate --checkpoint DIR --prompt TEXT [--tokens N] [--greedy]";
  c.declare = [](po::options_description& o, po::positional_options_description&) {
    o.add_options()("checkpoint", po::value<std::string>()->required(),
                    "a step_ directory written by `strata train`")(
        "prompt", po::value<std::string>()->required(), "text to continue")(
        "tokens", po::value<int64_t>()->default_value(64), "new tokens")(
        "greedy", po::value<bool>()->default_value(false)->implicit_value(true),
        "argmax decoding instead of sampling")(
        "temperature", po::value<double>()->default_value(0.8), "sampling temperature")(
        "top_k", po::value<int64_t>()->default_value(40),
        "sample among the k most likely tokens (0: all)")(
        "top_p", po::value<double>()->default_value(1.0), "nucleus sampling mass (1: off)")(
        "seed", po::value<uint64_t>()->default_value(0), "sampling seed");
  };
  c.run = [](const Config& cfg) {
    train::LoadedDecoder d = train::load_decoder(cfg.get<std::string>("checkpoint"));
    const auto tok = data::load_tokenizer(d.tokenizer);
    const std::vector<int32_t> p = tok->encode(cfg.get<std::string>("prompt"));
    STRATA_CHECK(!p.empty(), "generate: the prompt encodes to no tokens");
    models::GenerateOptions g;
    g.max_new_tokens = cfg.get<int64_t>("tokens");
    g.greedy = cfg.get<bool>("greedy");
    g.temperature = cfg.get<double>("temperature");
    g.top_k = cfg.get<int64_t>("top_k");
    g.top_p = cfg.get<double>("top_p");
    g.seed = cfg.get<uint64_t>("seed");
    std::vector<int64_t> ids(p.begin(), p.end());
    Tensor out = models::generate(*d.model, from_vector(ids, {1, int64_t(ids.size())}), g);
    const auto v = out.to_vector<int64_t>();
    std::cout << tok->decode(std::vector<int32_t>(v.begin(), v.end())) << "\n";
    return 0;
  };
  return c;
}

}  // namespace strata::launch
