#pragma once
// Element types. f32 is the default; f64 serves gradient checks and references; bf16 is the
// mixed-precision compute type (f32 master weights); i32/i64 hold ids and indices; b8 holds masks.
#include <cstdint>
#include <string_view>
#include <type_traits>

#include "core/bf16.h"
#include "core/error.h"

namespace strata {

enum class DType : uint8_t { f32, f64, bf16, i32, i64, b8 };

std::string_view dtype_name(DType t);
DType parse_dtype(std::string_view name);
size_t dtype_size(DType t);
inline bool is_floating(DType t) {
  return t == DType::f32 || t == DType::f64 || t == DType::bf16;
}

template <class T>
constexpr DType dtype_of();
template <>
constexpr DType dtype_of<float>() {
  return DType::f32;
}
template <>
constexpr DType dtype_of<double>() {
  return DType::f64;
}
template <>
constexpr DType dtype_of<bf16>() {
  return DType::bf16;
}
template <>
constexpr DType dtype_of<int32_t>() {
  return DType::i32;
}
template <>
constexpr DType dtype_of<int64_t>() {
  return DType::i64;
}
template <>
constexpr DType dtype_of<bool>() {
  return DType::b8;
}

// Arithmetic type used to compute on a stored type: bf16 computes in f32.
template <class T>
using compute_t = std::conditional_t<std::is_same_v<T, bf16>, float, T>;

// Calls fn.template operator()<T>() with T the C++ type of `t`, restricted to floating types.
template <class Fn>
decltype(auto) dispatch_floating(DType t, std::string_view op, Fn&& fn) {
  switch (t) {
    case DType::f32:
      return fn.template operator()<float>();
    case DType::f64:
      return fn.template operator()<double>();
    case DType::bf16:
      return fn.template operator()<bf16>();
    default:
      STRATA_FAIL(op, ": expected a floating dtype (f32, f64, bf16), got ", dtype_name(t));
  }
}

// Every dtype.
template <class Fn>
decltype(auto) dispatch_all(DType t, std::string_view op, Fn&& fn) {
  switch (t) {
    case DType::f32:
      return fn.template operator()<float>();
    case DType::f64:
      return fn.template operator()<double>();
    case DType::bf16:
      return fn.template operator()<bf16>();
    case DType::i32:
      return fn.template operator()<int32_t>();
    case DType::i64:
      return fn.template operator()<int64_t>();
    case DType::b8:
      return fn.template operator()<bool>();
  }
  STRATA_FAIL(op, ": unknown dtype");
}

}  // namespace strata
