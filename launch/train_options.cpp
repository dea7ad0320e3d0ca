#include "launch/train_options.h"

#include <algorithm>
#include <functional>
#include <map>

#include "core/device_select.h"
#include "launch/option_visitors.h"
#include "models/decoder_presets.h"

namespace strata::launch {

namespace {

const std::vector<std::string>& model_types() {
  static const std::vector<std::string> types{"decoder", "bert", "t5"};
  return types;
}

// A model.* key some model type's config visits: the types that read it with their help, and how
// to declare it.
struct ModelKey {
  std::vector<std::pair<std::string, std::string>> helps;  // (type, help)
  bool applies_to(const std::string& type) const {
    return std::any_of(helps.begin(), helps.end(), [&](const auto& h) { return h.first == type; });
  }
  std::function<void(po::options_description&, const char* key, const std::string& help)> declare;
};

// Collects the keys of one type's config (its visit_options).
class CollectModelKeys {
 public:
  CollectModelKeys(std::string type, std::map<std::string, ModelKey>& keys)
      : type_(std::move(type)), keys_(keys) {}
  template <class T>
  void operator()(const char* key, const T&, const char* help) {
    ModelKey& k = keys_[key];
    k.helps.push_back({type_, help});
    // No default: unset means the preset's value.
    k.declare = [](po::options_description& o, const char* name, const std::string& text) {
      o.add_options()(name, po::value<T>(), text.c_str());
    };
  }

 private:
  std::string type_;
  std::map<std::string, ModelKey>& keys_;
};

// Overrides a preset's fields with the model.* keys set explicitly.
class ReadModelOverrides {
 public:
  explicit ReadModelOverrides(const Config& cfg) : cfg_(cfg) {}
  template <class T>
  void operator()(const char* key, T& field, const char*) {
    if (cfg_.has(key)) field = cfg_.get<T>(key);
  }

 private:
  const Config& cfg_;
};

// Every model.* key of the three configs, built once from their visit_options.
const std::map<std::string, ModelKey>& model_keys() {
  static const std::map<std::string, ModelKey> keys = [] {
    std::map<std::string, ModelKey> k;
    CollectModelKeys decoder("decoder", k), bert("bert", k), t5("t5", k);
    models::DecoderConfig{}.visit_options(decoder);
    models::BertConfig{}.visit_options(bert);
    models::T5Config{}.visit_options(t5);
    return k;
  }();
  return keys;
}

// "hidden size" when every type reads the key alike, else "decoder: ...; bert, t5: ...".
std::string model_key_help(const ModelKey& k) {
  std::vector<std::pair<std::string, std::string>> groups;  // (types, help)
  for (const auto& [type, help] : k.helps) {
    auto it = std::find_if(groups.begin(), groups.end(), [&](auto& g) { return g.second == help; });
    if (it == groups.end())
      groups.push_back({type, help});
    else
      it->first += ", " + type;
  }
  if (groups.size() == 1 && k.helps.size() == model_types().size()) return groups[0].second;
  std::string out;
  for (const auto& [types, help] : groups) out += (out.empty() ? "" : "; ") + types + ": " + help;
  return out;
}

template <class C>
void apply_overrides(const Config& cfg, C& c) {
  c.vocab = cfg.has("model.vocab") ? cfg.get<int64_t>("model.vocab") : 0;
  ReadModelOverrides r(cfg);
  c.visit_options(r);
}

}  // namespace

void declare_model_options(po::options_description& o) {
  const train::ModelSpec d;
  o.add_options()("model.type", po::value<std::string>()->default_value(d.type),
                  "decoder (Llama-style causal LM), bert (crammed BERT, masked LM) or t5 (T5 v1.1, "
                  "span corruption)")(
      "model.preset", po::value<std::string>()->default_value(""),
      "named size: decoder-{tiny,small,gpt2-small}, bert-{tiny,small,c5}, t5-{tiny,small,base} "
      "(empty: <type>-small); the model.* keys below override its values when set")(
      "model.vocab", po::value<int64_t>(), "embedding rows (default: the tokenizer's vocabulary)")(
      "model.precision", po::value<std::string>()->default_value(d.decoder.precision.name()),
      "f32, or bf16: bf16 matmuls and activations with f32 master weights, optimizer state, "
      "norms, softmax, loss and residual stream (stored in checkpoints; generate and eval use it)");
  for (const auto& [key, k] : model_keys()) k.declare(o, key.c_str(), model_key_help(k));
}

train::ModelSpec model_spec(const Config& cfg) {
  train::ModelSpec m;
  m.type = cfg.get<std::string>("model.type");
  STRATA_CHECK(std::find(model_types().begin(), model_types().end(), m.type) != model_types().end(),
               "model.type: unknown type '", m.type, "'; valid: decoder, bert, t5");
  for (const auto& [key, k] : model_keys()) {
    if (!cfg.has(key) || k.applies_to(m.type)) continue;
    std::string list;
    for (const auto& [type, help] : k.helps) list += (list.empty() ? "" : ", ") + type;
    STRATA_FAIL(key, " does not apply to model.type ", m.type, " (only to: ", list,
                "); remove it from the config");
  }
  std::string preset = cfg.get<std::string>("model.preset");
  if (preset.empty()) preset = m.type + "-small";
  STRATA_CHECK(preset.rfind(m.type + "-", 0) == 0, "model.preset '", preset,
               "' is not a preset of model.type ", m.type, " (its presets start with '", m.type,
               "-')");
  // Mixed precision, for every model type (models/precision.h).
  const models::Precision precision =
      models::Precision::parse(cfg.get<std::string>("model.precision"), "model.precision");
  if (m.type == "decoder") {
    m.decoder = models::decoder_preset(preset);
    apply_overrides(cfg, m.decoder);
  } else if (m.type == "bert") {
    m.bert = models::bert_preset(preset);
    apply_overrides(cfg, m.bert);
  } else {
    m.t5 = models::t5_preset(preset);
    apply_overrides(cfg, m.t5);
  }
  m.decoder.precision = m.bert.precision = m.t5.precision = precision;
  return m;
}

std::string tokenizer_style(const Config& cfg) {
  const std::string style = read_options<DataPreparation>(cfg).tokenizer_style;
  if (!style.empty()) return style;
  return cfg.get<std::string>("model.type") == "bert" ? "bert" : "t5";
}

std::string default_data_dir(const Config& cfg) {
  const int vocab = read_options<DataPreparation>(cfg).tokenizer_vocab;
  const std::string size =
      vocab % 1024 == 0 ? std::to_string(vocab / 1024) + "k" : std::to_string(vocab);
  return "runs/data/" + tokenizer_style(cfg) + "-" + size;
}

void declare_train_options(po::options_description& o) {
  declare_options<DataPreparation>(o);
  declare_model_options(o);
  declare_options<train::TrainOptions>(o);
}

train::TrainOptions train_options(const Config& cfg) {
  train::TrainOptions o = read_options<train::TrainOptions>(cfg);
  o.model = model_spec(cfg);
  std::string preset = cfg.get<std::string>("model.preset");
  if (preset.empty()) preset = o.model.type + "-small";
  if (o.run_dir.empty()) o.run_dir = "runs/" + preset;
  // Checked here too (the trainer checks again), so a device this build or machine lacks is named
  // before any data is prepared.
  resolve_device(o.device, "run.device");
  o.config_text = cfg.dump();
  const std::string data_dir = default_data_dir(cfg);
  if (o.tokenizer.empty()) o.tokenizer = data_dir + "/tokenizer.model";
  if (o.train_data.empty()) o.train_data = data_dir + "/train";
  if (o.valid_data.empty()) o.valid_data = data_dir + "/valid";
  return o;
}

}  // namespace strata::launch
