// `strata generate`: a decoder checkpoint continues the prompt; a T5 checkpoint decodes greedily
// from it as encoder input.
#include <iostream>

#include "launch/commands.h"
#include "train/trainer.h"

namespace strata::launch {

Command make_generate_command() {
  Command c;
  c.name = "generate";
  c.summary = "continue a prompt with a decoder checkpoint, or decode from it with a T5 one";
  c.usage = "strata generate --checkpoint DIR --prompt TEXT [--tokens N] [--greedy]";
  c.declare = [](po::options_description& o, po::positional_options_description&) {
    o.add_options()("checkpoint", po::value<std::string>()->required(),
                    "a step_ directory written by `strata train`")(
        "prompt", po::value<std::string>()->required(), "text to continue (T5: the encoder input)")(
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
    train::LoadedTask t = train::load_trained(cfg.get<std::string>("checkpoint"));
    train::SampleOptions g;
    g.max_new_tokens = cfg.get<int64_t>("tokens");
    g.greedy = cfg.get<bool>("greedy");
    g.temperature = cfg.get<double>("temperature");
    g.top_k = cfg.get<int64_t>("top_k");
    g.top_p = cfg.get<double>("top_p");
    g.seed = cfg.get<uint64_t>("seed");
    g.clip_to_context = false;
    std::cout << t.task->generate(*t.tokenizer, cfg.get<std::string>("prompt"), g) << "\n";
    return 0;
  };
  return c;
}

}  // namespace strata::launch
