// Legacy 32-weight block formats Q8_0, Q4_0, Q4_1, Q5_0, Q5_1: scalar reference kernels.
// Without importance they reproduce ggml's quantize_row_*_ref bytes (including its odd roundings:
// truncation after +8.5/+16.5, roundf for Q8_0); with importance Q4_1/Q5_1 reproduce ggml's
// quantize_row_*_impl (weights imp_j * sqrt(sigma2 + x_j^2), sigma2 = mean x^2 of the row) and
// Q4_0/Q5_0 minimise the same weighted error with a wider search (never worse than ggml's).
// Layouts (GGUF): Q8_0 d:f16 qs[32]; Q4_0 d qs[16]; Q4_1 d m qs[16]; Q5_0 d qh[4] qs[16];
// Q5_1 d m qh[4] qs[16]. Nibbles: byte j low -> element j, high -> element j+16.
#include <cfloat>
#include <cmath>
#include <cstring>

#include "quantpress/fp16.h"
#include "quantpress/quants.h"
#include "quantpress/search.h"

namespace qp {
namespace {

constexpr int QK = 32;

// C's (int8_t)float on x86-64 = cvttss2si then the low byte (NaN/overflow -> 0x80000000 -> 0).
// Only reachable when 1/d overflows for subnormal d; emulated so edge cases match ggml's bytes.
inline int trunc_i8(float v) {
    const int32_t i = (v > -2147483648.f && v < 2147483648.f) ? static_cast<int32_t>(v) : INT32_MIN;
    return static_cast<int8_t>(static_cast<uint8_t>(i & 0xff));
}
inline int mini(int a, int b) { return a < b ? a : b; }

// Signed value with the largest magnitude (first one wins on ties).
inline float signed_absmax(const float* x) {
    float amax = 0.f, max = 0.f;
    for (int j = 0; j < QK; ++j) {
        const float a = std::fabs(x[j]);
        if (amax < a) { amax = a; max = x[j]; }
    }
    return max;
}

inline void min_max(const float* x, float* mn, float* mx) {
    float lo = FLT_MAX, hi = -FLT_MAX;
    for (int j = 0; j < QK; ++j) {
        if (x[j] < lo) lo = x[j];
        if (x[j] > hi) hi = x[j];
    }
    *mn = lo; *mx = hi;
}

inline void pack_nibbles(const uint8_t* L, uint8_t* qs) {
    for (int j = 0; j < 16; ++j) qs[j] = static_cast<uint8_t>((L[j] & 15) | ((L[j + 16] & 15) << 4));
}

inline void pack_qh(const uint8_t* L, uint8_t* qh4) {
    uint32_t qh = 0;
    for (int j = 0; j < QK; ++j) qh |= static_cast<uint32_t>((L[j] >> 4) & 1) << j;
    std::memcpy(qh4, &qh, 4);
}

// sigma^2 of ggml's importance paths: mean of x^2 over the whole row, summed in index order.
inline float row_sigma2(const float* x, int64_t n) {
    float s = 0;
    for (int64_t j = 0; j < n; ++j) s += x[j] * x[j];
    return s / n;
}

inline void imp_weights(const float* xb, const float* qw, float sigma2, float* w) {
    for (int j = 0; j < QK; ++j) w[j] = qw[j] * std::sqrt(sigma2 + xb[j] * xb[j]);
}

// Symmetric formats with importance: weighted best scale, ggml's make_qx_quants search widened
// (qp_make_qx_quants: never a higher weighted error than ggml's, usually lower), levels as found.
void symmetric_imp(const float* x, uint8_t* y, int64_t n, const float* imp, int nmax, int type_size, bool five) {
    const float sigma2 = row_sigma2(x, n);
    float w[QK];
    int8_t L[QK];
    for (int64_t ib = 0; ib < n / QK; ++ib, y += type_size) {
        imp_weights(x + QK * ib, imp + QK * ib, sigma2, w);
        const float d = qp_make_qx_quants(QK, nmax, x + QK * ib, L, w);
        store_f16(y, d);
        const uint8_t* Lu = reinterpret_cast<const uint8_t*>(L);
        if (five) { pack_qh(Lu, y + 2); pack_nibbles(Lu, y + 6); }
        else pack_nibbles(Lu, y + 2);
    }
}

// Scale+min formats with importance: ggml make_qkx3_quants(-0.9, 0.05, 36 steps).
void affine_imp(const float* x, uint8_t* y, int64_t n, const float* imp, int nmax, int type_size, bool five) {
    const float sigma2 = row_sigma2(x, n);
    float w[QK];
    uint8_t L[QK], Laux[QK];
    for (int64_t ib = 0; ib < n / QK; ++ib, y += type_size) {
        imp_weights(x + QK * ib, imp + QK * ib, sigma2, w);
        float mn;
        const float d = ggml_make_qkx3_quants(QK, nmax, x + QK * ib, w, L, &mn, Laux, -0.9f, 0.05f, 36);
        store_f16(y, d);
        store_f16(y + 2, -mn);
        if (five) { pack_qh(L, y + 4); pack_nibbles(L, y + 8); }
        else pack_nibbles(L, y + 4);
    }
}

}  // namespace

void quantize_row_q8_0_ref(const float* x, uint8_t* y, int64_t n, const float* /*imp: unused, as in ggml*/) {
    for (int64_t ib = 0; ib < n / QK; ++ib, x += QK, y += 34) {
        float amax = 0.f;
        for (int j = 0; j < QK; ++j) amax = std::fmax(amax, std::fabs(x[j]));
        const float d = amax / 127;
        const float id = d ? 1.0f / d : 0.0f;
        store_f16(y, d);
        for (int j = 0; j < QK; ++j) y[2 + j] = static_cast<uint8_t>(trunc_i8(std::round(x[j] * id)));
    }
}

void quantize_row_q4_0_ref(const float* x, uint8_t* y, int64_t n, const float* imp) {
    if (imp) return symmetric_imp(x, y, n, imp, 8, 18, false);
    uint8_t L[QK];
    for (int64_t ib = 0; ib < n / QK; ++ib, x += QK, y += 18) {
        const float d = signed_absmax(x) / -8;
        const float id = d ? 1.0f / d : 0.0f;
        store_f16(y, d);
        for (int j = 0; j < QK; ++j) L[j] = static_cast<uint8_t>(mini(15, trunc_i8(x[j] * id + 8.5f)));
        pack_nibbles(L, y + 2);
    }
}

void quantize_row_q5_0_ref(const float* x, uint8_t* y, int64_t n, const float* imp) {
    if (imp) return symmetric_imp(x, y, n, imp, 16, 22, true);
    uint8_t L[QK];
    for (int64_t ib = 0; ib < n / QK; ++ib, x += QK, y += 22) {
        const float d = signed_absmax(x) / -16;
        const float id = d ? 1.0f / d : 0.0f;
        store_f16(y, d);
        for (int j = 0; j < QK; ++j) L[j] = static_cast<uint8_t>(mini(31, trunc_i8(x[j] * id + 16.5f)));
        pack_qh(L, y + 2);
        pack_nibbles(L, y + 6);
    }
}

void quantize_row_q4_1_ref(const float* x, uint8_t* y, int64_t n, const float* imp) {
    if (imp) return affine_imp(x, y, n, imp, 15, 20, false);
    uint8_t L[QK];
    for (int64_t ib = 0; ib < n / QK; ++ib, x += QK, y += 20) {
        float mn, mx;
        min_max(x, &mn, &mx);
        const float d = (mx - mn) / 15;
        const float id = d ? 1.0f / d : 0.0f;
        store_f16(y, d);
        store_f16(y + 2, mn);
        for (int j = 0; j < QK; ++j) L[j] = static_cast<uint8_t>(mini(15, trunc_i8((x[j] - mn) * id + 0.5f)));
        pack_nibbles(L, y + 4);
    }
}

void quantize_row_q5_1_ref(const float* x, uint8_t* y, int64_t n, const float* imp) {
    if (imp) return affine_imp(x, y, n, imp, 31, 24, true);
    uint8_t L[QK];
    for (int64_t ib = 0; ib < n / QK; ++ib, x += QK, y += 24) {
        float mn, mx;
        min_max(x, &mn, &mx);
        const float d = (mx - mn) / 31;
        const float id = d ? 1.0f / d : 0.0f;
        store_f16(y, d);
        store_f16(y + 2, mn);
        // ggml: (uint8_t)(x + 0.5f) without clamp; values are in [0, 31.5) by construction.
        for (int j = 0; j < QK; ++j) L[j] = static_cast<uint8_t>(trunc_i8((x[j] - mn) * id + 0.5f));
        pack_qh(L, y + 4);
        pack_nibbles(L, y + 8);
    }
}

// ---- dequantization (same formulas as ggml's dequantize_row_*) ----

void dequantize_row_q8_0(const uint8_t* y, float* x, int64_t n) {
    for (int64_t ib = 0; ib < n / QK; ++ib, y += 34, x += QK) {
        const float d = load_f16(y);
        for (int j = 0; j < QK; ++j) x[j] = static_cast<int8_t>(y[2 + j]) * d;
    }
}

void dequantize_row_q4_0(const uint8_t* y, float* x, int64_t n) {
    for (int64_t ib = 0; ib < n / QK; ++ib, y += 18, x += QK) {
        const float d = load_f16(y);
        for (int j = 0; j < 16; ++j) {
            x[j] = ((y[2 + j] & 15) - 8) * d;
            x[j + 16] = ((y[2 + j] >> 4) - 8) * d;
        }
    }
}

void dequantize_row_q4_1(const uint8_t* y, float* x, int64_t n) {
    for (int64_t ib = 0; ib < n / QK; ++ib, y += 20, x += QK) {
        const float d = load_f16(y), m = load_f16(y + 2);
        for (int j = 0; j < 16; ++j) {
            x[j] = (y[4 + j] & 15) * d + m;
            x[j + 16] = (y[4 + j] >> 4) * d + m;
        }
    }
}

void dequantize_row_q5_0(const uint8_t* y, float* x, int64_t n) {
    for (int64_t ib = 0; ib < n / QK; ++ib, y += 22, x += QK) {
        const float d = load_f16(y);
        uint32_t qh;
        std::memcpy(&qh, y + 2, 4);
        for (int j = 0; j < 16; ++j) {
            const int q0 = (y[6 + j] & 15) | (((qh >> j) & 1) << 4);
            const int q1 = (y[6 + j] >> 4) | (((qh >> (j + 16)) & 1) << 4);
            x[j] = (q0 - 16) * d;
            x[j + 16] = (q1 - 16) * d;
        }
    }
}

void dequantize_row_q5_1(const uint8_t* y, float* x, int64_t n) {
    for (int64_t ib = 0; ib < n / QK; ++ib, y += 24, x += QK) {
        const float d = load_f16(y), m = load_f16(y + 2);
        uint32_t qh;
        std::memcpy(&qh, y + 4, 4);
        for (int j = 0; j < 16; ++j) {
            const int q0 = (y[8 + j] & 15) | (((qh >> j) & 1) << 4);
            const int q1 = (y[8 + j] >> 4) | (((qh >> (j + 16)) & 1) << 4);
            x[j] = q0 * d + m;
            x[j + 16] = q1 * d + m;
        }
    }
}

}  // namespace qp
