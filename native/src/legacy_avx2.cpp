// AVX2 versions of the legacy 32-weight quantizers, byte-identical to legacy.cpp's _ref kernels.
// Compiled with function-level target attributes (not -mavx2 for the whole build), and only
// called when the CPU reports AVX2, so the extension still loads on older x86 CPUs.
// Importance-weighted paths and edge cases where 1/d overflows go to the scalar reference.
#include "quantpress/quants.h"

#if (defined(__x86_64__) || defined(__i386__)) && (defined(__GNUC__) || defined(__clang__))
#include <immintrin.h>

#include <cmath>
#include <cstring>


#define QP_AVX2 __attribute__((target("avx2,fma,f16c")))

namespace qp {
namespace {

struct Block32 { __m256 v[4]; };

// F16C conversion (round to nearest even, same bits as ggml's software routine for finite input);
// calling the SSE-compiled software routine from AVX code costs a state-transition stall per block.
QP_AVX2 inline void store_f16(uint8_t* p, float f) {
    const uint16_t h = static_cast<uint16_t>(_cvtss_sh(f, _MM_FROUND_TO_NEAREST_INT));
    std::memcpy(p, &h, 2);
}

QP_AVX2 inline Block32 load32(const float* x) {
    return {{_mm256_loadu_ps(x), _mm256_loadu_ps(x + 8), _mm256_loadu_ps(x + 16), _mm256_loadu_ps(x + 24)}};
}

QP_AVX2 inline float hmax(__m256 v) {
    __m128 m = _mm_max_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    m = _mm_max_ps(m, _mm_movehl_ps(m, m));
    m = _mm_max_ss(m, _mm_movehdup_ps(m));
    return _mm_cvtss_f32(m);
}
QP_AVX2 inline float hmin(__m256 v) {
    __m128 m = _mm_min_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    m = _mm_min_ps(m, _mm_movehl_ps(m, m));
    m = _mm_min_ss(m, _mm_movehdup_ps(m));
    return _mm_cvtss_f32(m);
}

QP_AVX2 inline float absmax(const Block32& b) {
    const __m256 sign = _mm256_set1_ps(-0.0f);
    __m256 m = _mm256_andnot_ps(sign, b.v[0]);
    for (int k = 1; k < 4; ++k) m = _mm256_max_ps(m, _mm256_andnot_ps(sign, b.v[k]));
    return hmax(m);
}

// Signed value of the first element whose |x| is the maximum (ggml's "strict >" scan).
QP_AVX2 inline float signed_absmax(const float* x, const Block32& b) {
    const float amax = absmax(b);
    if (amax == 0.f) return 0.f;
    const __m256 sign = _mm256_set1_ps(-0.0f), va = _mm256_set1_ps(amax);
    for (int k = 0; k < 4; ++k) {
        const int mask = _mm256_movemask_ps(_mm256_cmp_ps(_mm256_andnot_ps(sign, b.v[k]), va, _CMP_EQ_OQ));
        if (mask) return x[8 * k + __builtin_ctz(static_cast<unsigned>(mask))];
    }
    return 0.f;  // unreachable for finite input
}

// Truncate 32 floats to int32, clamp to [0, hi], write 32 bytes.
QP_AVX2 inline void trunc_clamp_store(const __m256 f[4], int hi, uint8_t* L) {
    const __m256i vhi = _mm256_set1_epi32(hi);
    __m256i q[4];
    for (int k = 0; k < 4; ++k) q[k] = _mm256_min_epi32(_mm256_cvttps_epi32(f[k]), vhi);
    // Values are in [0, 31]: pack without saturation effects, then undo the lane interleave.
    const __m256i p01 = _mm256_packs_epi32(q[0], q[1]);
    const __m256i p23 = _mm256_packs_epi32(q[2], q[3]);
    __m256i b = _mm256_packus_epi16(p01, p23);
    b = _mm256_permutevar8x32_epi32(b, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(L), b);
}

QP_AVX2 inline void pack_nibbles(const uint8_t* L, uint8_t* qs) {
    const __m128i lo = _mm_loadu_si128(reinterpret_cast<const __m128i*>(L));
    const __m128i hi = _mm_loadu_si128(reinterpret_cast<const __m128i*>(L + 16));
    const __m128i m = _mm_set1_epi8(15);
    const __m128i r = _mm_or_si128(_mm_and_si128(lo, m), _mm_slli_epi16(_mm_and_si128(hi, m), 4));
    _mm_storeu_si128(reinterpret_cast<__m128i*>(qs), r);
}

QP_AVX2 inline void pack_qh(const uint8_t* L, uint8_t* qh4) {
    const __m256i v = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(L));
    const uint32_t qh = static_cast<uint32_t>(_mm256_movemask_epi8(_mm256_slli_epi16(v, 3)));  // bit 4 -> bit 7
    std::memcpy(qh4, &qh, 4);
}

// Symmetric (Q4_0 / Q5_0): d = max / -(nmax), q = min(2*nmax-1, trunc(x/d + nmax + 0.5)).
QP_AVX2 void symmetric(const float* x, uint8_t* y, int64_t n, int nmax, int type_size, bool five,
                       QuantizeRowFn fallback) {
    alignas(32) uint8_t L[32];
    const __m256 bias = _mm256_set1_ps(static_cast<float>(nmax) + 0.5f);
    for (int64_t ib = 0; ib < n / 32; ++ib, x += 32, y += type_size) {
        const Block32 b = load32(x);
        const float d = signed_absmax(x, b) / static_cast<float>(-nmax);
        const float id = d ? 1.0f / d : 0.0f;
        if (!std::isfinite(id)) { fallback(x, y, 32, nullptr); continue; }
        store_f16(y, d);
        const __m256 vid = _mm256_set1_ps(id);
        __m256 f[4];
        for (int k = 0; k < 4; ++k) f[k] = _mm256_add_ps(_mm256_mul_ps(b.v[k], vid), bias);
        trunc_clamp_store(f, 2 * nmax - 1, L);
        if (five) { pack_qh(L, y + 2); pack_nibbles(L, y + 6); }
        else pack_nibbles(L, y + 2);
    }
}

// Affine (Q4_1 / Q5_1): d = (max - min) / nmax, q = trunc((x - min)/d + 0.5).
QP_AVX2 void affine(const float* x, uint8_t* y, int64_t n, int nmax, int type_size, bool five,
                    QuantizeRowFn fallback) {
    alignas(32) uint8_t L[32];
    const __m256 half = _mm256_set1_ps(0.5f);
    for (int64_t ib = 0; ib < n / 32; ++ib, x += 32, y += type_size) {
        const Block32 b = load32(x);
        const float mn = hmin(_mm256_min_ps(_mm256_min_ps(b.v[0], b.v[1]), _mm256_min_ps(b.v[2], b.v[3])));
        const float mx = hmax(_mm256_max_ps(_mm256_max_ps(b.v[0], b.v[1]), _mm256_max_ps(b.v[2], b.v[3])));
        const float d = (mx - mn) / static_cast<float>(nmax);
        const float id = d ? 1.0f / d : 0.0f;
        if (!std::isfinite(id)) { fallback(x, y, 32, nullptr); continue; }
        store_f16(y, d);
        store_f16(y + 2, mn);
        const __m256 vid = _mm256_set1_ps(id), vmn = _mm256_set1_ps(mn);
        __m256 f[4];
        for (int k = 0; k < 4; ++k) f[k] = _mm256_add_ps(_mm256_mul_ps(_mm256_sub_ps(b.v[k], vmn), vid), half);
        trunc_clamp_store(f, nmax, L);
        if (five) { pack_qh(L, y + 4); pack_nibbles(L, y + 8); }
        else pack_nibbles(L, y + 4);
    }
}

}  // namespace

QP_AVX2 void quantize_row_q8_0_avx2(const float* x, uint8_t* y, int64_t n, const float* imp) {
    const __m256 sign = _mm256_set1_ps(-0.0f), half = _mm256_set1_ps(0.5f), one = _mm256_set1_ps(1.0f);
    for (int64_t ib = 0; ib < n / 32; ++ib, x += 32, y += 34) {
        const Block32 b = load32(x);
        const float d = absmax(b) / 127;
        const float id = d ? 1.0f / d : 0.0f;
        if (!std::isfinite(id)) { quantize_row_q8_0_ref(x, y, 32, imp); continue; }
        store_f16(y, d);
        const __m256 vid = _mm256_set1_ps(id);
        __m256i q[4];
        for (int k = 0; k < 4; ++k) {
            // roundf (half away from zero): truncate, then step away from zero if |frac| >= 0.5.
            const __m256 v = _mm256_mul_ps(b.v[k], vid);
            const __m256 t = _mm256_round_ps(v, _MM_FROUND_TO_ZERO | _MM_FROUND_NO_EXC);
            const __m256 frac = _mm256_andnot_ps(sign, _mm256_sub_ps(v, t));
            const __m256 step = _mm256_and_ps(_mm256_cmp_ps(frac, half, _CMP_GE_OQ),
                                              _mm256_or_ps(one, _mm256_and_ps(sign, v)));
            q[k] = _mm256_cvttps_epi32(_mm256_add_ps(t, step));
        }
        const __m256i p01 = _mm256_packs_epi32(q[0], q[1]);
        const __m256i p23 = _mm256_packs_epi32(q[2], q[3]);
        __m256i bytes = _mm256_packs_epi16(p01, p23);
        bytes = _mm256_permutevar8x32_epi32(bytes, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
        _mm256_storeu_si256(reinterpret_cast<__m256i*>(y + 2), bytes);
    }
}

QP_AVX2 void quantize_row_q4_0_avx2(const float* x, uint8_t* y, int64_t n, const float* imp) {
    if (imp) return quantize_row_q4_0_ref(x, y, n, imp);
    symmetric(x, y, n, 8, 18, false, quantize_row_q4_0_ref);
}
QP_AVX2 void quantize_row_q5_0_avx2(const float* x, uint8_t* y, int64_t n, const float* imp) {
    if (imp) return quantize_row_q5_0_ref(x, y, n, imp);
    symmetric(x, y, n, 16, 22, true, quantize_row_q5_0_ref);
}
QP_AVX2 void quantize_row_q4_1_avx2(const float* x, uint8_t* y, int64_t n, const float* imp) {
    if (imp) return quantize_row_q4_1_ref(x, y, n, imp);
    affine(x, y, n, 15, 20, false, quantize_row_q4_1_ref);
}
QP_AVX2 void quantize_row_q5_1_avx2(const float* x, uint8_t* y, int64_t n, const float* imp) {
    if (imp) return quantize_row_q5_1_ref(x, y, n, imp);
    affine(x, y, n, 31, 24, true, quantize_row_q5_1_ref);
}

}  // namespace qp

#endif
