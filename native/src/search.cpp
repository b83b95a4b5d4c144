// ggml-compatible scale searches used by the importance-weighted legacy paths.
// Written to evaluate exactly the same float expressions in the same order as ggml-quants.c
// (compiled with -ffp-contract=off), which is what makes the outputs byte-identical.
#include "quantpress/search.h"

#include <cmath>
#include <cstring>

#include "quantpress/fp16.h"

namespace qp {

static inline int clampi(int v, int lo, int hi) { return v < lo ? lo : (v > hi ? hi : v); }

float ggml_make_qx_quants(int n, int nmax, const float* x, int8_t* L, const float* qw) {
    float max = 0, amax = 0;
    for (int i = 0; i < n; ++i) {
        const float ax = std::fabs(x[i]);
        if (ax > amax) { amax = ax; max = x[i]; }
    }
    if (amax < kGroupMaxEps) {
        std::memset(L, 0, static_cast<size_t>(n));
        return 0.f;
    }
    auto weight = [&](int i) { return qw ? qw[i] : x[i] * x[i]; };
    float iscale = -nmax / max;
    float sumlx = 0, suml2 = 0;
    for (int i = 0; i < n; ++i) {
        const int l = clampi(nearest_int(iscale * x[i]), -nmax, nmax - 1);
        L[i] = static_cast<int8_t>(l + nmax);
        const float w = weight(i);
        sumlx += w * x[i] * l;
        suml2 += w * l * l;
    }
    float scale = suml2 ? sumlx / suml2 : 0.0f;
    float best = scale * sumlx;
    for (int is = -9; is <= 9; ++is) {
        if (is == 0) continue;
        iscale = -(nmax + 0.1f * is) / max;
        sumlx = suml2 = 0;
        for (int i = 0; i < n; ++i) {
            const int l = clampi(nearest_int(iscale * x[i]), -nmax, nmax - 1);
            const float w = weight(i);
            sumlx += w * x[i] * l;
            suml2 += w * l * l;
        }
        if (suml2 > 0 && sumlx * sumlx > best * suml2) {
            for (int i = 0; i < n; ++i) {
                L[i] = static_cast<int8_t>(nmax + clampi(nearest_int(iscale * x[i]), -nmax, nmax - 1));
            }
            scale = sumlx / suml2;
            best = scale * sumlx;
        }
    }
    return scale;
}

namespace {

// Weighted least squares of x on the levels: returns sumlx^2 / suml2 (larger = lower error) and the scale.
float qx_score(int n, int nmax, const float* x, const int8_t* L, const float* qw, float* scale) {
    float sumlx = 0, suml2 = 0;
    for (int i = 0; i < n; ++i) {
        const float l = static_cast<float>(L[i] - nmax), w = qw ? qw[i] : x[i] * x[i];
        sumlx += w * x[i] * l;
        suml2 += w * l * l;
    }
    *scale = suml2 > 0 ? sumlx / suml2 : 0.f;
    return suml2 > 0 ? sumlx * sumlx / suml2 : 0.f;
}

void qx_round(int n, int nmax, const float* x, float iscale, int8_t* L) {
    for (int i = 0; i < n; ++i) L[i] = static_cast<int8_t>(nmax + clampi(nearest_int(iscale * x[i]), -nmax, nmax - 1));
}

}  // namespace

float qp_make_qx_quants(int n, int nmax, const float* x, int8_t* L, const float* qw) {
    float scale = ggml_make_qx_quants(n, nmax, x, L, qw);
    if (scale == 0.f || n > 256) return scale;
    float max = 0, amax = 0;
    for (int i = 0; i < n; ++i) {
        if (std::fabs(x[i]) > amax) { amax = std::fabs(x[i]); max = x[i]; }
    }
    int8_t T[256];
    float unused;
    float best = qx_score(n, nmax, x, L, qw, &unused);  // ggml's own scale stays unless a candidate wins
    auto consider = [&](float iscale) {
        float s;
        qx_round(n, nmax, x, iscale, T);
        const float sc = qx_score(n, nmax, x, T, qw, &s);
        if (sc > best) {
            best = sc;
            scale = s;
            std::memcpy(L, T, static_cast<size_t>(n));
            return true;
        }
        return false;
    };
    for (int is = -9; is <= 9; ++is) consider((nmax - 1 + 0.1f * is) / max);
    for (int it = 0; it < 3 && scale != 0.f && consider(1.f / scale); ++it) {}
    return scale;
}

float ggml_make_qkx3_quants(int n, int nmax, const float* x, const float* w, uint8_t* L, float* the_min,
                            uint8_t* Laux, float rmin, float rdelta, int nstep) {
    float min = x[0], max = x[0];
    float sum_w = w[0];
    float sum_x = sum_w * x[0];
    for (int i = 1; i < n; ++i) {
        if (x[i] < min) min = x[i];
        if (x[i] > max) max = x[i];
        sum_w += w[i];
        sum_x += w[i] * x[i];
    }
    if (min > 0) min = 0;
    if (max <= min) {
        std::memset(L, 0, static_cast<size_t>(n));
        *the_min = -min;
        return 0.f;
    }
    float iscale = nmax / (max - min);
    float scale = 1 / iscale;
    float best_err = 0;
    for (int i = 0; i < n; ++i) {
        L[i] = static_cast<uint8_t>(clampi(nearest_int(iscale * (x[i] - min)), 0, nmax));
        const float diff = scale * L[i] + min - x[i];
        best_err += w[i] * (diff * diff);
    }
    for (int is = 0; is <= nstep; ++is) {
        iscale = (rmin + rdelta * is + nmax) / (max - min);
        float sum_l = 0, sum_l2 = 0, sum_xl = 0;
        for (int i = 0; i < n; ++i) {
            const int l = clampi(nearest_int(iscale * (x[i] - min)), 0, nmax);
            Laux[i] = static_cast<uint8_t>(l);
            sum_l += w[i] * l;
            sum_l2 += w[i] * l * l;
            sum_xl += w[i] * l * x[i];
        }
        const float D = sum_w * sum_l2 - sum_l * sum_l;
        if (D > 0) {
            float this_scale = (sum_w * sum_xl - sum_x * sum_l) / D;
            float this_min = (sum_l2 * sum_x - sum_l * sum_xl) / D;
            if (this_min > 0) {
                this_min = 0;
                this_scale = sum_xl / sum_l2;
            }
            float err = 0;
            for (int i = 0; i < n; ++i) {
                const float diff = this_scale * Laux[i] + this_min - x[i];
                err += w[i] * (diff * diff);
            }
            if (err < best_err) {
                std::memcpy(L, Laux, static_cast<size_t>(n));
                best_err = err;
                scale = this_scale;
                min = this_min;
            }
        }
    }
    *the_min = -min;
    return scale;
}

}  // namespace qp
