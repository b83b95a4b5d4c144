#pragma once
// IEEE binary16 <-> binary32 conversions, bit-exact with ggml's software routines
// (round-to-nearest-even, subnormals kept, NaN -> 0x7E00). Header-only and `static inline`
// so the generic and the AVX2 translation units each get their own copy (no ODR sharing).
#include <cstdint>
#include <cstring>

namespace qp {

static inline float f32_from_bits(uint32_t w) { float f; std::memcpy(&f, &w, 4); return f; }
static inline uint32_t f32_to_bits(float f) { uint32_t w; std::memcpy(&w, &f, 4); return w; }

static inline float fp16_to_fp32(uint16_t h) {
    const uint32_t w = static_cast<uint32_t>(h) << 16;
    const uint32_t sign = w & 0x80000000u;
    const uint32_t two_w = w + w;
    // Normal numbers: shift the exponent/mantissa into place and rebias by 2^-112.
    const float normalized = f32_from_bits((two_w >> 4) + (0xE0u << 23)) * 0x1.0p-112f;
    // Subnormals: build 0.5 + m*2^-24 style value with a magic bias, then subtract it.
    const float denormalized = f32_from_bits((two_w >> 17) | (126u << 23)) - 0.5f;
    const uint32_t result = sign | (two_w < (1u << 27) ? f32_to_bits(denormalized) : f32_to_bits(normalized));
    return f32_from_bits(result);
}

static inline uint16_t fp32_to_fp16(float f) {
    // Scaling up then down makes the FPU do the mantissa rounding (to nearest even) for us.
    float base = (__builtin_fabsf(f) * 0x1.0p+112f) * 0x1.0p-110f;
    const uint32_t w = f32_to_bits(f);
    const uint32_t shl1_w = w + w;
    const uint32_t sign = w & 0x80000000u;
    uint32_t bias = shl1_w & 0xFF000000u;
    if (bias < 0x71000000u) bias = 0x71000000u;
    base = f32_from_bits((bias >> 1) + 0x07800000u) + base;
    const uint32_t bits = f32_to_bits(base);
    const uint32_t exp_bits = (bits >> 13) & 0x00007C00u;
    const uint32_t mantissa_bits = bits & 0x00000FFFu;
    const uint32_t nonsign = exp_bits + mantissa_bits;
    return static_cast<uint16_t>((sign >> 16) | (shl1_w > 0xFF000000u ? 0x7E00u : nonsign));
}

static inline void store_f16(uint8_t* p, float f) { const uint16_t h = fp32_to_fp16(f); std::memcpy(p, &h, 2); }
static inline float load_f16(const uint8_t* p) { uint16_t h; std::memcpy(&h, p, 2); return fp16_to_fp32(h); }
static inline float round_f16(float f) { return fp16_to_fp32(fp32_to_fp16(f)); }

// Round to nearest, ties to even, valid for |f| <= 4194303 (ggml's nearest_int trick, exact same results).
static inline int nearest_int(float f) {
    const float v = f + 12582912.f;
    int32_t i; std::memcpy(&i, &v, 4);
    return (i & 0x007fffff) - 0x00400000;
}

}  // namespace qp
