#include "train/budget_costs.h"

#include <cmath>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "core/error.h"

namespace strata::train {

ReferenceCosts::ReferenceCosts(std::string model, std::map<int, WorkCosts> by_layers)
    : model_(std::move(model)), rows_(std::move(by_layers)) {
  STRATA_CHECK(!rows_.empty(), "reference costs of '", model_, "': no rows");
  for (const auto& [layers, c] : rows_) {
    STRATA_CHECK(layers >= 1, "reference costs: a row for ", layers, " layers");
    for (double v : {c.forward_per_token, c.backward_per_token, c.per_update})
      STRATA_CHECK(std::isfinite(v) && v >= 0, "reference costs of '", model_, "' at ", layers,
                   " layers: a cost of ", v, " seconds");
    STRATA_CHECK(c.forward_per_token > 0 && c.backward_per_token > 0, "reference costs of '",
                 model_, "' at ", layers, " layers: forward and backward must cost > 0");
  }
}

ReferenceCosts ReferenceCosts::load(const std::string& path) {
  STRATA_CHECK(std::filesystem::is_regular_file(path), "budget.rst_table: no file '", path,
               "'; measure one with `strata calibrate --calibrate.out ", path,
               "` and the run's model options");
  std::ifstream in(path);
  std::string model;
  std::map<int, WorkCosts> rows;
  std::string line;
  for (int n = 1; std::getline(in, line); ++n) {
    if (line.empty() || line[0] == '#') continue;
    if (line.rfind("model ", 0) == 0) {
      model = line.substr(6);
      continue;
    }
    std::istringstream s(line);
    int layers = 0;
    WorkCosts c;
    std::string extra;
    STRATA_CHECK((s >> layers >> c.forward_per_token >> c.backward_per_token >> c.per_update) &&
                     !(s >> extra),
                 "reference costs ", path, " line ", n, ": expected '<layers> <forward s/token> ",
                 "<backward s/token> <update s>', got '", line, "'");
    STRATA_CHECK(rows.emplace(layers, c).second, "reference costs ", path, " line ", n,
                 ": a second row for ", layers, " layers");
  }
  STRATA_CHECK(!model.empty(), "reference costs ", path,
               ": no 'model' line; was it written by `strata calibrate`?");
  return ReferenceCosts(model, rows);
}

void ReferenceCosts::save(const std::string& path, const std::string& comment) const {
  const std::filesystem::path target(path), tmp = target.string() + ".tmp";
  if (target.has_parent_path()) std::filesystem::create_directories(target.parent_path());
  {
    std::ofstream out(tmp);
    std::istringstream c(comment);
    for (std::string line; std::getline(c, line);) out << "# " << line << "\n";
    out << "model " << model_ << "\n";
    out.precision(9);
    for (const auto& [layers, w] : rows_)
      out << layers << " " << w.forward_per_token << " " << w.backward_per_token << " "
          << w.per_update << "\n";
    STRATA_CHECK(out.flush(), "calibrate: cannot write ", tmp.string());
  }
  std::filesystem::rename(tmp, target);
}

const WorkCosts& ReferenceCosts::at(int active_layers) const {
  if (active_layers == 0) return rows_.rbegin()->second;
  auto it = rows_.find(active_layers);
  STRATA_CHECK(it != rows_.end(), "reference costs of '", model_, "': no row for ", active_layers,
               " active layers; measure every depth with `strata calibrate "
               "--calibrate.all_depths`");
  return it->second;
}

double reference_seconds(const StepCharge& charge, const ReferenceCosts& costs) {
  const WorkCosts& c = costs.at(charge.active_layers);
  return double(charge.forward_tokens) * c.forward_per_token +
         double(charge.backward_tokens) * c.backward_per_token +
         double(charge.updates) * c.per_update;
}

double step_flops(const StepCharge& charge, double training_flops_per_token) {
  return (double(charge.forward_tokens) + 2.0 * double(charge.backward_tokens)) *
         training_flops_per_token / 3.0;
}

}  // namespace strata::train
