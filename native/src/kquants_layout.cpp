// GGUF byte layouts of the k-quant and IQ4 formats: packing from KBlock and dequantization.
// Layouts follow ggml-common.h; the tests check
// them against gguf.quants.dequantize and against ggml's own bytes.
#include <cstring>

#include "quantpress/fp16.h"
#include "quantpress/kquants.h"

namespace qp {

const int8_t kIq4nlValues[16] = {-127, -104, -83, -65, -49, -35, -22, -10, 1, 13, 25, 38, 53, 69, 89, 113};

namespace {

// 2-bit planes of Q2_K/Q3_K: qs[32h + l] holds elements 128h + 32k + l in bits 2k..2k+1.
void pack_2bit(const uint8_t* L, uint8_t* qs) {
    for (int h = 0; h < 2; ++h)
        for (int l = 0; l < 32; ++l) {
            const uint8_t* e = L + 128 * h + l;
            qs[32 * h + l] = static_cast<uint8_t>((e[0] & 3) | ((e[32] & 3) << 2) | ((e[64] & 3) << 4) | ((e[96] & 3) << 6));
        }
}
inline int get_2bit(const uint8_t* qs, int e) { return (qs[32 * (e / 128) + e % 32] >> (2 * ((e % 128) / 32))) & 3; }

// 4-bit plane of Q4_K/Q5_K: qs[32c + l] low nibble = element 64c + l, high nibble = 64c + 32 + l.
void pack_4bit(const uint8_t* L, uint8_t* qs) {
    for (int c = 0; c < 4; ++c)
        for (int l = 0; l < 32; ++l)
            qs[32 * c + l] = static_cast<uint8_t>((L[64 * c + l] & 15) | ((L[64 * c + 32 + l] & 15) << 4));
}
inline int get_4bit(const uint8_t* qs, int e) {
    const int c = e / 64, r = e % 64;
    return r < 32 ? qs[32 * c + r] & 15 : qs[32 * c + r - 32] >> 4;
}

// Twelve bytes holding eight 6-bit scales and eight 6-bit mins (get_scale_min_k4 in ggml).
void pack_scales_k4(const int* sc, const int* mn, uint8_t* s) {
    for (int j = 0; j < 4; ++j) {
        s[j] = static_cast<uint8_t>((sc[j] & 63) | ((sc[j + 4] >> 4) << 6));
        s[j + 4] = static_cast<uint8_t>((mn[j] & 63) | ((mn[j + 4] >> 4) << 6));
        s[j + 8] = static_cast<uint8_t>((sc[j + 4] & 15) | ((mn[j + 4] & 15) << 4));
    }
}
inline void get_scale_min_k4(int j, const uint8_t* s, int* sc, int* m) {
    if (j < 4) { *sc = s[j] & 63; *m = s[j + 4] & 63; }
    else {
        *sc = (s[j + 4] & 15) | ((s[j - 4] >> 6) << 4);
        *m = (s[j + 4] >> 4) | ((s[j] >> 6) << 4);
    }
}

}  // namespace

// Q2_K: scales[16] (low nibble scale, high nibble min), qs[64], d, dmin.
void pack_q2_K(const KBlock& b, uint8_t* y) {
    for (int j = 0; j < 16; ++j) y[j] = static_cast<uint8_t>((b.sc[j] & 15) | ((b.mn[j] & 15) << 4));
    pack_2bit(b.L, y + 16);
    store_f16(y + 80, b.d);
    store_f16(y + 82, b.dmin);
}

// Q3_K: hmask[32], qs[64], scales[12] (6-bit codes + 32), d. L = level + 4 in 0..7.
void pack_q3_K(const KBlock& b, uint8_t* y) {
    std::memset(y, 0, 32);
    for (int k = 0; k < 8; ++k)
        for (int l = 0; l < 32; ++l) y[l] = static_cast<uint8_t>(y[l] | ((b.L[32 * k + l] > 3) << k));
    pack_2bit(b.L, y + 32);
    uint8_t* s = y + 96;
    std::memset(s, 0, 12);
    for (int j = 0; j < 16; ++j) {
        const int c = b.sc[j] + 32;
        s[j % 8] = static_cast<uint8_t>(s[j % 8] | ((c & 15) << (j < 8 ? 0 : 4)));
        s[8 + j % 4] = static_cast<uint8_t>(s[8 + j % 4] | (((c >> 4) & 3) << (2 * (j / 4))));
    }
    store_f16(y + 108, b.d);
}

// Q4_K: d, dmin, scales[12], qs[128].
void pack_q4_K(const KBlock& b, uint8_t* y) {
    store_f16(y, b.d);
    store_f16(y + 2, b.dmin);
    pack_scales_k4(b.sc, b.mn, y + 4);
    pack_4bit(b.L, y + 16);
}

// Q5_K: d, dmin, scales[12], qh[32], qs[128]; qh[l] bit 2c / 2c+1 = 5th bit of 64c+l / 64c+32+l.
void pack_q5_K(const KBlock& b, uint8_t* y) {
    store_f16(y, b.d);
    store_f16(y + 2, b.dmin);
    pack_scales_k4(b.sc, b.mn, y + 4);
    uint8_t* qh = y + 16;
    std::memset(qh, 0, 32);
    for (int k = 0; k < 8; ++k)
        for (int l = 0; l < 32; ++l) qh[l] = static_cast<uint8_t>(qh[l] | (((b.L[32 * k + l] >> 4) & 1) << k));
    pack_4bit(b.L, y + 48);
}

// Q6_K: ql[128], qh[64], scales[16] int8, d. L = level + 32 in 0..63.
void pack_q6_K(const KBlock& b, uint8_t* y) {
    uint8_t* ql = y;
    uint8_t* qh = y + 128;
    for (int h = 0; h < 2; ++h)
        for (int l = 0; l < 32; ++l) {
            const uint8_t* e = b.L + 128 * h + l;
            ql[64 * h + l] = static_cast<uint8_t>((e[0] & 15) | ((e[64] & 15) << 4));
            ql[64 * h + l + 32] = static_cast<uint8_t>((e[32] & 15) | ((e[96] & 15) << 4));
            qh[32 * h + l] = static_cast<uint8_t>((e[0] >> 4) | ((e[32] >> 4) << 2) | ((e[64] >> 4) << 4) | ((e[96] >> 4) << 6));
        }
    for (int j = 0; j < 16; ++j) y[192 + j] = static_cast<uint8_t>(static_cast<int8_t>(b.sc[j]));
    store_f16(y + 208, b.d);
}

// IQ4_XS: d, scales_h (u16), scales_l[4], qs[128]; codes ls = sc + 32 (6 bits).
void pack_iq4_xs(const KBlock& b, uint8_t* y) {
    store_f16(y, b.d);
    uint16_t sh = 0;
    uint8_t* sl = y + 4;
    std::memset(sl, 0, 4);
    for (int ib = 0; ib < 8; ++ib) {
        const int ls = b.sc[ib] + 32;
        sl[ib / 2] = static_cast<uint8_t>(sl[ib / 2] | ((ls & 15) << (4 * (ib % 2))));
        sh = static_cast<uint16_t>(sh | (((ls >> 4) & 3) << (2 * ib)));
    }
    std::memcpy(y + 2, &sh, 2);
    for (int ib = 0; ib < 8; ++ib)
        for (int j = 0; j < 16; ++j)
            y[8 + 16 * ib + j] = static_cast<uint8_t>((b.L[32 * ib + j] & 15) | ((b.L[32 * ib + 16 + j] & 15) << 4));
}

// ---- dequantization (formulas of ggml's dequantize_row_*) ----

void dequantize_row_q2_K(const uint8_t* y, float* x, int64_t n) {
    for (int64_t i = 0; i < n / QK_K; ++i, y += 84, x += QK_K) {
        const float d = load_f16(y + 80), dmin = load_f16(y + 82);
        for (int e = 0; e < QK_K; ++e) {
            const uint8_t s = y[e / 16];
            x[e] = d * (s & 15) * get_2bit(y + 16, e) - dmin * (s >> 4);
        }
    }
}

void dequantize_row_q3_K(const uint8_t* y, float* x, int64_t n) {
    for (int64_t i = 0; i < n / QK_K; ++i, y += 110, x += QK_K) {
        const float d = load_f16(y + 108);
        const uint8_t* s = y + 96;
        for (int e = 0; e < QK_K; ++e) {
            const int j = e / 16;
            const int lo = j < 8 ? s[j] & 15 : s[j - 8] >> 4;
            const int code = lo | (((s[8 + j % 4] >> (2 * (j / 4))) & 3) << 4);
            const int hbit = (y[e % 32] >> (e / 32)) & 1;
            const int q = get_2bit(y + 32, e) - (hbit ? 0 : 4);
            x[e] = d * (code - 32) * q;
        }
    }
}

void dequantize_row_q4_K(const uint8_t* y, float* x, int64_t n) {
    for (int64_t i = 0; i < n / QK_K; ++i, y += 144, x += QK_K) {
        const float d = load_f16(y), dmin = load_f16(y + 2);
        for (int e = 0; e < QK_K; ++e) {
            int sc, m;
            get_scale_min_k4(e / 32, y + 4, &sc, &m);
            x[e] = d * sc * get_4bit(y + 16, e) - dmin * m;
        }
    }
}

void dequantize_row_q5_K(const uint8_t* y, float* x, int64_t n) {
    for (int64_t i = 0; i < n / QK_K; ++i, y += 176, x += QK_K) {
        const float d = load_f16(y), dmin = load_f16(y + 2);
        for (int e = 0; e < QK_K; ++e) {
            int sc, m;
            get_scale_min_k4(e / 32, y + 4, &sc, &m);
            const int q = get_4bit(y + 48, e) | (((y[16 + e % 32] >> (e / 32)) & 1) << 4);
            x[e] = d * sc * q - dmin * m;
        }
    }
}

void dequantize_row_q6_K(const uint8_t* y, float* x, int64_t n) {
    for (int64_t i = 0; i < n / QK_K; ++i, y += 210, x += QK_K) {
        const float d = load_f16(y + 208);
        for (int e = 0; e < QK_K; ++e) {
            const int h = e / 128, r = e % 128, k = r / 32, l = r % 32;
            const uint8_t qlb = y[64 * h + l + (k & 1) * 32];
            const int lo = k < 2 ? qlb & 15 : qlb >> 4;
            const int hi = (y[128 + 32 * h + l] >> (2 * k)) & 3;
            x[e] = d * static_cast<int8_t>(y[192 + e / 16]) * ((lo | (hi << 4)) - 32);
        }
    }
}

void dequantize_row_iq4_nl(const uint8_t* y, float* x, int64_t n) {
    for (int64_t i = 0; i < n / 32; ++i, y += 18, x += 32) {
        const float d = load_f16(y);
        for (int j = 0; j < 16; ++j) {
            x[j] = d * kIq4nlValues[y[2 + j] & 15];
            x[j + 16] = d * kIq4nlValues[y[2 + j] >> 4];
        }
    }
}

void dequantize_row_iq4_xs(const uint8_t* y, float* x, int64_t n) {
    for (int64_t i = 0; i < n / QK_K; ++i, y += 136, x += QK_K) {
        const float d = load_f16(y);
        uint16_t sh;
        std::memcpy(&sh, y + 2, 2);
        for (int ib = 0; ib < 8; ++ib) {
            const int ls = ((y[4 + ib / 2] >> (4 * (ib % 2))) & 15) | (((sh >> (2 * ib)) & 3) << 4);
            const float dl = d * (ls - 32);
            const uint8_t* qs = y + 8 + 16 * ib;
            for (int j = 0; j < 16; ++j) {
                x[32 * ib + j] = dl * kIq4nlValues[qs[j] & 15];
                x[32 * ib + 16 + j] = dl * kIq4nlValues[qs[j] >> 4];
            }
        }
    }
}

}  // namespace qp
