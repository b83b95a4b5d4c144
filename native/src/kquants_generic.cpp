// Baseline-ISA build of the k-quant search (see kquants_impl.inc).
#define QP_KQ_NS kq_generic
#include "kquants_impl.inc"
