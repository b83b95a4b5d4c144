// AVX2 build of the k-quant search (see kquants_impl.inc). CMake compiles this file alone with
// -mavx2 -mfma -mf16c; formats.cpp calls into it only when the CPU reports AVX2.
#if defined(__x86_64__) || defined(__i386__) || defined(_M_X64)
#define QP_KQ_NS kq_avx2
#include "kquants_impl.inc"
#endif
