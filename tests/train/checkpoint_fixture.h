#pragma once
// Small checkpoint states and a way to damage one, shared by the checkpoint tests.
#include <gtest/gtest.h>

#include <cstdint>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>

#include "core/ops.h"
#include "train/checkpoint.h"

namespace strata::train::fixtures {

// A tensor whose bytes are easy to find in the file: float values 1000000 + i.
inline Tensor marker_tensor(int64_t n) {
  Tensor t = Tensor::empty({n}, DType::f32);
  for (int64_t i = 0; i < n; ++i) t.data<float>()[i] = 1000000.0f + float(i);
  return t;
}

inline CheckpointState small_state(int64_t seed) {
  CheckpointState s;
  s.model["embed.weight"] = randn({8, 4}, RandomKey{uint64_t(seed)});
  s.model["layers.0.marker"] = marker_tensor(256);
  s.optim["embed.weight"]["exp_avg"] = randn({8, 4}, RandomKey{uint64_t(seed), 1});
  s.ints["samples_consumed"] = 100 * seed;
  s.doubles["clock_seconds"] = 1.5 * double(seed);
  s.strings["config"] = "[model]\nd_model = 4\n";
  return s;
}

// Flips one bit inside the marker tensor's bytes: a checksum mismatch in /model/layers.0.marker.
inline void flip_byte_of_marker(const std::filesystem::path& file) {
  std::fstream f(file, std::ios::in | std::ios::out | std::ios::binary);
  std::string bytes((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
  const Tensor m = marker_tensor(256);
  const std::string needle(static_cast<const char*>(m.raw_data()), 64 * sizeof(float));
  const size_t pos = bytes.find(needle);
  ASSERT_NE(pos, std::string::npos) << "marker tensor not found in " << file;
  f.seekp(std::streamoff(pos + 10));
  f.put(char(bytes[pos + 10] ^ 0x40));
}

}  // namespace strata::train::fixtures
