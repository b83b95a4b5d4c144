#pragma once
// Run-time SIMD detection: the build is portable; fast paths are chosen per CPU at run time.
namespace qp {
enum class SimdLevel { Scalar, SSE42, AVX2, AVX512, NEON };
SimdLevel simd_level();
const char* simd_level_name();
}  // namespace qp
