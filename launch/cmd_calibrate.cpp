// `strata calibrate`: measures the reference costs a reference-time budget (budget.unit rst)
// charges, for the model the same options would train (train/calibrate.h).
#include <iostream>

#include "data/tokenizer.h"
#include "launch/commands.h"
#include "launch/option_visitors.h"
#include "launch/train_options.h"
#include "train/calibrate.h"

namespace strata::launch {

Command make_calibrate_command() {
  Command c;
  c.name = "calibrate";
  c.summary = "measure the reference costs (per token and update) of a model for budget.unit rst";
  c.usage =
      "strata calibrate [--config configs/<preset>.ini] [--calibrate.out FILE] "
      "[--section.key value]...";
  c.declare = [](po::options_description& o, po::positional_options_description&) {
    declare_train_options(o);
    declare_options<train::CalibrateOptions>(o);
  };
  c.run = [](const Config& cfg) {
    const train::TrainOptions o = train_options(cfg);
    const auto c = read_options<train::CalibrateOptions>(cfg);
    prepare_once(cfg, o);  // the tokenizer the run will use
    const auto tokenizer = data::load_tokenizer(o.tokenizer);
    const train::ReferenceCosts costs = train::calibrate(o, *tokenizer, c, std::cerr);
    costs.save(c.out,
               "reference costs of `strata calibrate`: seconds per token of forward and "
               "backward, and per optimizer update\nlayers forward backward update");
    std::cout << "calibrate: wrote " << c.out << " (" << costs.rows().size()
              << (costs.rows().size() == 1 ? " depth" : " depths")
              << "); train with --budget.unit rst --budget.rst_table " << c.out << "\n";
    return 0;
  };
  return c;
}

}  // namespace strata::launch
