// The format table: name -> block geometry and kernels, with the fast kernel chosen once from the
// CPU's features (so one portable build runs everywhere and uses AVX2 where present).
#include <cstring>

#include "quantpress/cpu_features.h"
#include "quantpress/kquants.h"
#include "quantpress/quants.h"

namespace qp {

namespace {
// Measured with benchmarks/kquants.py (error ratio to ggml, "gen" = generated weights, "demo" =
// the demo model's ffn_down with its real imatrix):
// - Without importance every weight counts the same and the largest one anchors the scale well, so
//   coarser grids lose little: Q2_K 4 candidates, Q5_K 6 (gen 0.961 -> 0.967 vs the dense grid, at
//   2-4x the speed). Q4_K: 10 candidates over r in [-2, 1] (as many again anchored at the max, see
//   fit_affine8), codes +-2 and 3 rounds (gen 0.976 -> 0.969).
// - Symmetric types: candidates that clip the extreme weight by whole levels pay off, with and
//   without importance: Q6_K steps of 2 levels (plain +-8: gen 0.975 -> 0.943, demo 0.95 -> 0.79;
//   with importance +-16: gen 0.960 -> 0.839, demo 0.971 -> 0.757), Q3_K with importance steps of
//   0.8 to +-6.4 (demo 0.976 -> 0.947, gen 0.932 -> 0.896; steps of 0.6 to +-7.2 gained 0.003 more
//   at 30% more instructions). Q3_K without importance keeps its 2
//   candidates: +-0.6 would give gen 0.963 -> 0.960 but cost 25% of its speed.
// - With importance the affine grids are dense and wide (weighted optima often clip a large but
//   unimportant weight): Q4_K r in [-2, 1] (0.950 -> 0.940).
SearchParams plain_params() {
    SearchParams p;
    p.q3_ngrid = 0;
    p.q4_nstep = 10; p.q4_rmin = -2.0f; p.q4_rdelta = 0.3f; p.q4_rounds = 3; p.q4_window = 2;
    p.q6_ngrid = 4;
    p.q2_nstep = 4; p.q2_rdelta = 0.4f;
    p.q5_nstep = 6;
    p.lloyd = 2;
    p.rounds = 1;
    return p;
}
}  // namespace

SearchParams g_search[2] = {plain_params(), SearchParams{}};

namespace {

bool has_avx2() {
    const SimdLevel s = simd_level();
    return s == SimdLevel::AVX2 || s == SimdLevel::AVX512;
}

#if (defined(__x86_64__) || defined(__i386__)) && (defined(__GNUC__) || defined(__clang__))
#define QP_PICK(ref, avx2) (has_avx2() ? (avx2) : (ref))
#else
#define QP_PICK(ref, avx2) (ref)
#endif

QuantFormat* build_table() {
    static QuantFormat table[] = {
        {"Q8_0", 32, 34, quantize_row_q8_0_ref, QP_PICK(quantize_row_q8_0_ref, quantize_row_q8_0_avx2), dequantize_row_q8_0},
        {"Q4_0", 32, 18, quantize_row_q4_0_ref, QP_PICK(quantize_row_q4_0_ref, quantize_row_q4_0_avx2), dequantize_row_q4_0},
        {"Q4_1", 32, 20, quantize_row_q4_1_ref, QP_PICK(quantize_row_q4_1_ref, quantize_row_q4_1_avx2), dequantize_row_q4_1},
        {"Q5_0", 32, 22, quantize_row_q5_0_ref, QP_PICK(quantize_row_q5_0_ref, quantize_row_q5_0_avx2), dequantize_row_q5_0},
        {"Q5_1", 32, 24, quantize_row_q5_1_ref, QP_PICK(quantize_row_q5_1_ref, quantize_row_q5_1_avx2), dequantize_row_q5_1},
        // k-quants and IQ4: our own search (kquants_impl.inc). The scalar build is the reference
        // twin; the AVX2 build gives the same bytes (tests/native/test_kquants.py checks it).
        {"Q2_K", 256, 84, kq_generic::quantize_row_q2_K, QP_PICK(kq_generic::quantize_row_q2_K, kq_avx2::quantize_row_q2_K), dequantize_row_q2_K},
        {"Q3_K", 256, 110, kq_generic::quantize_row_q3_K, QP_PICK(kq_generic::quantize_row_q3_K, kq_avx2::quantize_row_q3_K), dequantize_row_q3_K},
        {"Q4_K", 256, 144, kq_generic::quantize_row_q4_K, QP_PICK(kq_generic::quantize_row_q4_K, kq_avx2::quantize_row_q4_K), dequantize_row_q4_K},
        {"Q5_K", 256, 176, kq_generic::quantize_row_q5_K, QP_PICK(kq_generic::quantize_row_q5_K, kq_avx2::quantize_row_q5_K), dequantize_row_q5_K},
        {"Q6_K", 256, 210, kq_generic::quantize_row_q6_K, QP_PICK(kq_generic::quantize_row_q6_K, kq_avx2::quantize_row_q6_K), dequantize_row_q6_K},
        {"IQ4_NL", 32, 18, kq_generic::quantize_row_iq4_nl, QP_PICK(kq_generic::quantize_row_iq4_nl, kq_avx2::quantize_row_iq4_nl), dequantize_row_iq4_nl},
        {"IQ4_XS", 256, 136, kq_generic::quantize_row_iq4_xs, QP_PICK(kq_generic::quantize_row_iq4_xs, kq_avx2::quantize_row_iq4_xs), dequantize_row_iq4_xs},
        {nullptr, 0, 0, nullptr, nullptr, nullptr},
    };
    return table;
}

}  // namespace

const QuantFormat* all_formats() {
    static const QuantFormat* table = build_table();
    return table;
}

const QuantFormat* find_format(const char* name) {
    for (const QuantFormat* f = all_formats(); f->name; ++f) {
        if (std::strcmp(f->name, name) == 0) return f;
    }
    return nullptr;
}

}  // namespace qp
