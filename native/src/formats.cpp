// The format table: name -> block geometry and kernels, with the fast kernel chosen once from the
// CPU's features (so one portable build runs everywhere and uses AVX2 where present).
#include <cstring>

#include "quantpress/cpu_features.h"
#include "quantpress/kquants.h"
#include "quantpress/quants.h"

namespace qp {

namespace {
// Without importance every weight counts the same and the largest one anchors the scale well, so
// a much coarser search loses little. Measured with benchmarks/kquants.py on generated weights,
// error ratio to ggml with the dense grid -> this one: Q3_K 0.958 -> 0.963 (2 candidates + Lloyd
// steps), Q6_K 0.972 -> 0.973, Q2_K 0.869 -> 0.878, Q5_K 0.961 -> 0.967, at 2-4x the speed.
// Q4_K keeps its full search: its error is the closest to ggml's.
// With importance the grids are dense and wide (weighted optima often clip a large but unimportant
// weight): Q3_K +-1.6 levels around the extreme in steps of 0.4 (error ratio 0.967 -> 0.931; steps
// of 0.1 gave the same error 2.5x slower), Q4_K r in [-2, 1] (0.950 -> 0.940).
SearchParams plain_params() {
    SearchParams p;
    p.q3_ngrid = 0;
    p.q4_nstep = 20; p.q4_rmin = -1.0f;
    p.q6_ngrid = 1;
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
