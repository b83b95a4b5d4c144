#pragma once
// Scale/level search helpers shared by several formats (search.cpp). The `ggml_*` ones reproduce
// ggml's helpers operation for operation (same float order) so outputs are byte-identical.
#include <cstdint>

namespace qp {

constexpr float kGroupMaxEps = 1e-15f;

// Symmetric signed levels l in [-nmax, nmax-1] (stored as l + nmax) minimising sum w (x - s l)^2
// over 19 candidate scales around -nmax/max. w = qw if given, else x^2. Returns s.
float ggml_make_qx_quants(int n, int nmax, const float* x, int8_t* L, const float* qw);
// ggml_make_qx_quants, then more candidates (the largest weight anchored at the top level +(nmax-1)
// as well as at -nmax) and alternating least-squares rounds (levels for the scale, scale for the
// levels); a candidate replaces the best only when its weighted error is lower, so the result is
// never worse than ggml's. Same contract: L[i] = level + nmax, returns the scale.
float qp_make_qx_quants(int n, int nmax, const float* x, int8_t* L, const float* qw);

// Asymmetric x ~ s*l - m, l in [0, nmax], weighted least squares over candidate scales
// (ggml's make_qkx3_quants with weights given). Writes m (>= 0) to *the_min, returns s.
float ggml_make_qkx3_quants(int n, int nmax, const float* x, const float* w, uint8_t* L, float* the_min,
                            uint8_t* Laux, float rmin, float rdelta, int nstep);

}  // namespace qp
