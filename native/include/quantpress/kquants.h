#pragma once
// k-quant and IQ4 formats (kquants.cpp search, kquants_layout.cpp packing/dequantization).
// Our own search (not ggml's): minimises sum_i w_i (x_i - x^_i)^2 with w_i = importance_i when
// given, else w_i = 1 (plain squared error: without calibration data every weight counts the same).
#include <cstdint>

namespace qp {

constexpr int QK_K = 256;

// Search effort per type (candidate scales per sub-block; Lloyd refinement steps). Defaults were
// chosen with benchmarks/kquants.py; set_search_params() exists for that tuning only.
struct SearchParams {
    int q2_nstep = 18;  float q2_rmin = -0.9f, q2_rdelta = 0.1f;
    int q4_nstep = 30;  float q4_rmin = -2.0f, q4_rdelta = 0.1f;
    int q5_nstep = 10;  float q5_rmin = -0.5f, q5_rdelta = 0.1f;
    int q3_ngrid = 8, q6_ngrid = 8, iq4_ngrid = 7;
    float q3_step = 0.8f;  // grid step (in levels) of the Q3_K candidates: +-ngrid*step around the extreme
    float q6_step = 2.0f;  // the same for Q6_K
    int lloyd = 3;
    int rounds = 2;     // (least-squares super-scale re-fit + code refinement) rounds, Q2_K/Q5_K/Q3_K/Q6_K
    int q4_rounds = 2;  // the same for Q4_K
    // Code refinement neighbourhood of Q4_K / Q5_K: (scale, min) codes +-window, |d_scale - d_min| <= band.
    int q4_window = 1, q4_band = 2, q5_window = 1, q5_band = 2;
    int anchor_max = 7;  // bit 0/1/2: Q2_K/Q4_K/Q5_K fits also try candidates anchored at the sub-block's max
    // Error weight of each x_j: base_j (importance, or 1) times sqrt(sigma2 + x_j^2), sigma2 = 2 mean x^2 of
    // the super-block, when set (ggml's k-quant weighting: larger weights count more), else base_j alone.
    // On by default: with plain squared error (0) the kernels beat ggml's RMSE but lost to it in
    // KL-divergence on models whose weights were never quantized (benchmarks/auto_choice.py).
    int magnitude = 1;
};
// [0] without importance, [1] with importance (a denser grid: weighted optima move away from
// the largest weight, and ggml's importance path, the reference, is itself ~3x slower).
extern SearchParams g_search[2];  // defined in formats.cpp (baseline TU)

// Per-super-block decoded parameters, filled by the search and written by the packers.
struct KBlock {
    float d = 0, dmin = 0;      // fp16-representable super-scales
    int sc[16] = {};            // sub-block scale codes (signed for Q3_K/Q6_K/IQ4_XS, as decoded)
    int mn[16] = {};            // sub-block min codes (Q2_K/Q4_K/Q5_K)
    uint8_t L[QK_K] = {};       // level per weight as stored (0..2^bits-1; IQ4: table index)
};

void pack_q2_K(const KBlock& b, uint8_t* y);
void pack_q3_K(const KBlock& b, uint8_t* y);
void pack_q4_K(const KBlock& b, uint8_t* y);
void pack_q5_K(const KBlock& b, uint8_t* y);
void pack_q6_K(const KBlock& b, uint8_t* y);
void pack_iq4_xs(const KBlock& b, uint8_t* y);

void dequantize_row_q2_K(const uint8_t* y, float* x, int64_t n);
void dequantize_row_q3_K(const uint8_t* y, float* x, int64_t n);
void dequantize_row_q4_K(const uint8_t* y, float* x, int64_t n);
void dequantize_row_q5_K(const uint8_t* y, float* x, int64_t n);
void dequantize_row_q6_K(const uint8_t* y, float* x, int64_t n);
void dequantize_row_iq4_nl(const uint8_t* y, float* x, int64_t n);
void dequantize_row_iq4_xs(const uint8_t* y, float* x, int64_t n);

extern const int8_t kIq4nlValues[16];

// The search, built twice (kquants_impl.inc): kq_generic for any CPU, kq_avx2 for AVX2 CPUs.
#define QP_KQ_DECLARE(ns)                                                          \
    namespace ns {                                                                 \
    void quantize_row_q2_K(const float* x, uint8_t* y, int64_t n, const float* imp);   \
    void quantize_row_q3_K(const float* x, uint8_t* y, int64_t n, const float* imp);   \
    void quantize_row_q4_K(const float* x, uint8_t* y, int64_t n, const float* imp);   \
    void quantize_row_q5_K(const float* x, uint8_t* y, int64_t n, const float* imp);   \
    void quantize_row_q6_K(const float* x, uint8_t* y, int64_t n, const float* imp);   \
    void quantize_row_iq4_nl(const float* x, uint8_t* y, int64_t n, const float* imp); \
    void quantize_row_iq4_xs(const float* x, uint8_t* y, int64_t n, const float* imp); \
    }
QP_KQ_DECLARE(kq_generic)
QP_KQ_DECLARE(kq_avx2)
#undef QP_KQ_DECLARE

}  // namespace qp
