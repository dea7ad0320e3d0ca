#include "core/dtype.h"

namespace strata {

std::string_view dtype_name(DType t) {
  switch (t) {
    case DType::f32:
      return "f32";
    case DType::f64:
      return "f64";
    case DType::bf16:
      return "bf16";
    case DType::i32:
      return "i32";
    case DType::i64:
      return "i64";
    case DType::b8:
      return "bool";
  }
  return "?";
}

DType parse_dtype(std::string_view name) {
  for (DType t : {DType::f32, DType::f64, DType::bf16, DType::i32, DType::i64, DType::b8})
    if (dtype_name(t) == name) return t;
  STRATA_FAIL("unknown dtype '", name, "'; valid: f32, f64, bf16, i32, i64, bool");
}

size_t dtype_size(DType t) {
  switch (t) {
    case DType::f32:
      return 4;
    case DType::f64:
      return 8;
    case DType::bf16:
      return 2;
    case DType::i32:
      return 4;
    case DType::i64:
      return 8;
    case DType::b8:
      return 1;
  }
  return 0;
}

}  // namespace strata
