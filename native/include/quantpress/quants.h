#pragma once
// The table of GGUF block formats quantpress implements natively.
// Every kernel works on whole rows so that rows can be split across threads; a row is
// n_per_row floats (a multiple of block_size) and row_bytes = n_per_row / block_size * type_size.
#include <cstddef>
#include <cstdint>

namespace qp {

// x: one row of n_per_row floats; y: row_bytes output; imp: n_per_row importance weights or nullptr.
using QuantizeRowFn = void (*)(const float* x, uint8_t* y, int64_t n_per_row, const float* imp);
// y: one quantized row; x: n_per_row floats out.
using DequantizeRowFn = void (*)(const uint8_t* y, float* x, int64_t n_per_row);

struct QuantFormat {
    const char* name;        // GGML type name, e.g. "Q4_K"
    int block_size;          // weights per block
    int type_size;           // bytes per block
    QuantizeRowFn quantize_ref;  // scalar reference (slow twin, tests compare against it)
    QuantizeRowFn quantize_fast; // best implementation for this CPU (may equal quantize_ref)
    DequantizeRowFn dequantize;
};

// nullptr if the name is unknown. Fast kernels are chosen at run time from the CPU's features.
const QuantFormat* find_format(const char* name);
// All formats, terminated by an entry with name == nullptr.
const QuantFormat* all_formats();

// Legacy 32-weight formats (legacy.cpp): byte-identical to ggml's reference quantizers without
// importance, and to ggml's importance-weighted path with importance.
void quantize_row_q8_0_ref(const float* x, uint8_t* y, int64_t n, const float* imp);
void quantize_row_q4_0_ref(const float* x, uint8_t* y, int64_t n, const float* imp);
void quantize_row_q4_1_ref(const float* x, uint8_t* y, int64_t n, const float* imp);
void quantize_row_q5_0_ref(const float* x, uint8_t* y, int64_t n, const float* imp);
void quantize_row_q5_1_ref(const float* x, uint8_t* y, int64_t n, const float* imp);
void dequantize_row_q8_0(const uint8_t* y, float* x, int64_t n);
void dequantize_row_q4_0(const uint8_t* y, float* x, int64_t n);
void dequantize_row_q4_1(const uint8_t* y, float* x, int64_t n);
void dequantize_row_q5_0(const uint8_t* y, float* x, int64_t n);
void dequantize_row_q5_1(const uint8_t* y, float* x, int64_t n);

// AVX2 versions (legacy_avx2.cpp, compiled for AVX2 via function attributes; only called when
// the CPU has AVX2). Same bytes as the _ref versions.
void quantize_row_q8_0_avx2(const float* x, uint8_t* y, int64_t n, const float* imp);
void quantize_row_q4_0_avx2(const float* x, uint8_t* y, int64_t n, const float* imp);
void quantize_row_q4_1_avx2(const float* x, uint8_t* y, int64_t n, const float* imp);
void quantize_row_q5_0_avx2(const float* x, uint8_t* y, int64_t n, const float* imp);
void quantize_row_q5_1_avx2(const float* x, uint8_t* y, int64_t n, const float* imp);

}  // namespace qp
