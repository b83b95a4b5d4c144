#include "quantpress/cpu_features.h"

namespace qp {

SimdLevel simd_level() {
#if defined(__x86_64__) || defined(_M_X64) || defined(__i386__)
#if defined(__GNUC__) || defined(__clang__)
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw")) return SimdLevel::AVX512;
    if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") &&
        __builtin_cpu_supports("f16c")) return SimdLevel::AVX2;
    if (__builtin_cpu_supports("sse4.2")) return SimdLevel::SSE42;
#endif
    return SimdLevel::Scalar;
#elif defined(__aarch64__) || defined(_M_ARM64)
    return SimdLevel::NEON;
#else
    return SimdLevel::Scalar;
#endif
}

const char* simd_level_name() {
    switch (simd_level()) {
        case SimdLevel::AVX512: return "avx512";
        case SimdLevel::AVX2: return "avx2";
        case SimdLevel::SSE42: return "sse4.2";
        case SimdLevel::NEON: return "neon";
        default: return "scalar";
    }
}

}  // namespace qp
