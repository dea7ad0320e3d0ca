#include "models/decoder_presets.h"

#include "core/error.h"

namespace strata::models {

std::vector<std::string> decoder_preset_names() {
  return {"decoder-tiny", "decoder-small", "decoder-gpt2-small"};
}

DecoderConfig decoder_preset(const std::string& name) {
  DecoderConfig c;
  if (name == "decoder-tiny") {
    c.d_model = 64, c.n_layers = 2, c.n_heads = 4, c.n_kv_heads = 2, c.d_ff = 128;
  } else if (name == "decoder-small") {
    c.d_model = 256, c.n_layers = 4, c.n_heads = 4, c.d_ff = 1024;
  } else if (name == "decoder-gpt2-small") {
    c.d_model = 768, c.n_layers = 12, c.n_heads = 12, c.d_ff = 2048, c.tie_embeddings = true;
  } else {
    std::string known;
    for (const auto& n : decoder_preset_names()) known += (known.empty() ? "" : ", ") + n;
    STRATA_FAIL("decoder_preset: unknown preset '", name, "'; known: ", known);
  }
  return c;
}

}  // namespace strata::models
