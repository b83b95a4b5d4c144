// The only file that touches Python: argument validation, allocation and GIL handling.
// Validation and allocation happen with the GIL held; the kernels run with it released.
#include <nanobind/nanobind.h>
#include <nanobind/ndarray.h>
#include <nanobind/stl/string.h>

#include <atomic>
#include <cmath>
#include <cstdint>
#include <limits>
#include <string>
#include <thread>

#include "quantpress/cpu_features.h"
#include "quantpress/kquants.h"
#include "quantpress/parallel.h"
#include "quantpress/quants.h"

namespace nb = nanobind;
using Array = nb::ndarray<nb::ro, nb::device::cpu>;

namespace {

const qp::QuantFormat& format_or_raise(const std::string& qtype) {
    const qp::QuantFormat* f = qp::find_format(qtype.c_str());
    if (!f) {
        std::string known;
        for (const qp::QuantFormat* g = qp::all_formats(); g->name; ++g) known += (known.empty() ? "" : ", ") + std::string(g->name);
        throw nb::value_error(("unknown quantization type '" + qtype + "'; native kernels support: " + known).c_str());
    }
    return *f;
}

// Exponent-bits test (all ones = Inf/NaN): integer ops, so the compiler vectorizes it.
bool row_is_finite(const float* x, int64_t n) {
    const uint32_t* bits = reinterpret_cast<const uint32_t*>(x);
    uint32_t bad = 0;
    for (int64_t j = 0; j < n; ++j) bad |= static_cast<uint32_t>((bits[j] & 0x7f800000u) == 0x7f800000u);
    return bad == 0;
}

bool c_contiguous(const Array& a) {
    if (a.size() == 0) return true;
    int64_t expected = 1;
    for (size_t d = a.ndim(); d-- > 0;) {
        if (a.shape(d) > 1 && a.stride(d) != expected) return false;
        expected *= static_cast<int64_t>(a.shape(d));
    }
    return true;
}

const float* check_importance(const nb::object& importance, int64_t n_per_row) {
    if (importance.is_none()) return nullptr;
    Array imp;
    if (!nb::try_cast<Array>(importance, imp, false))
        throw nb::value_error("importance must be a 1-D float32 numpy array (one weight per column)");
    if (imp.dtype() != nb::dtype<float>() || imp.ndim() != 1 || !c_contiguous(imp))
        throw nb::value_error("importance must be a contiguous 1-D float32 array (one weight per column)");
    if (static_cast<int64_t>(imp.shape(0)) != n_per_row)
        throw nb::value_error(("importance has " + std::to_string(imp.shape(0)) + " values but rows have " +
                               std::to_string(n_per_row) + " columns").c_str());
    const float* p = static_cast<const float*>(imp.data());
    for (int64_t j = 0; j < n_per_row; ++j) {
        if (!std::isfinite(p[j]) || p[j] < 0)
            throw nb::value_error(("importance must be finite and non-negative (column " + std::to_string(j) + ")").c_str());
    }
    return p;
}

template <class T>
nb::ndarray<nb::numpy, T, nb::ndim<2>> new_array(size_t rows, size_t cols, T** data) {
    T* buf = new T[rows * cols > 0 ? rows * cols : 1];
    nb::capsule owner(buf, [](void* p) noexcept { delete[] static_cast<T*>(p); });
    *data = buf;
    size_t shape[2] = {rows, cols};
    return nb::ndarray<nb::numpy, T, nb::ndim<2>>(buf, 2, shape, owner);
}

nb::object quantize_impl(const Array& x, const std::string& qtype, const nb::object& importance, int threads,
                         bool reference) {
    const qp::QuantFormat& f = format_or_raise(qtype);
    if (x.dtype() != nb::dtype<float>())
        throw nb::value_error("x must be float32 (convert explicitly with x.astype(np.float32); no silent copies)");
    if (x.ndim() != 2)
        throw nb::value_error(("x must be 2-D (rows, n_per_row), got " + std::to_string(x.ndim()) + " dimensions").c_str());
    if (!c_contiguous(x)) throw nb::value_error("x must be C-contiguous (use np.ascontiguousarray)");
    const int64_t rows = static_cast<int64_t>(x.shape(0)), n = static_cast<int64_t>(x.shape(1));
    if (n == 0 || n % f.block_size)
        throw nb::value_error((qtype + " needs a row length that is a multiple of " + std::to_string(f.block_size) +
                               ", got " + std::to_string(n)).c_str());
    if (threads < 0) throw nb::value_error("threads must be >= 0 (0 = all cores)");
    const float* imp = check_importance(importance, n);
    const int64_t row_bytes = n / f.block_size * f.type_size;
    uint8_t* out = nullptr;
    auto result = new_array<uint8_t>(static_cast<size_t>(rows), static_cast<size_t>(row_bytes), &out);
    const float* src = static_cast<const float*>(x.data());
    const qp::QuantizeRowFn kernel = reference ? f.quantize_ref : f.quantize_fast;
    std::atomic<int64_t> bad_row{std::numeric_limits<int64_t>::max()};
    {
        nb::gil_scoped_release release;
        qp::parallel_for(rows, threads, [&](int64_t r0, int64_t r1) {
            for (int64_t r = r0; r < r1; ++r) {
                const float* xr = src + r * n;
                if (!row_is_finite(xr, n)) {
                    int64_t cur = bad_row.load();
                    while (r < cur && !bad_row.compare_exchange_weak(cur, r)) {}
                    return;
                }
                kernel(xr, out + r * row_bytes, n, imp);
            }
        });
    }
    if (bad_row.load() != std::numeric_limits<int64_t>::max())
        throw nb::value_error(("x contains NaN or Inf in row " + std::to_string(bad_row.load())).c_str());
    return nb::cast(result);
}

nb::object dequantize_impl(const Array& data, const std::string& qtype, int64_t n_per_row) {
    const qp::QuantFormat& f = format_or_raise(qtype);
    if (n_per_row <= 0 || n_per_row % f.block_size)
        throw nb::value_error((qtype + " needs n_per_row to be a positive multiple of " + std::to_string(f.block_size)).c_str());
    if (data.dtype() != nb::dtype<uint8_t>()) throw nb::value_error("data must be a uint8 array");
    if (data.ndim() < 1 || data.ndim() > 2 || !c_contiguous(data))
        throw nb::value_error("data must be a C-contiguous 1-D or 2-D uint8 array");
    const int64_t row_bytes = n_per_row / f.block_size * f.type_size;
    const int64_t total = static_cast<int64_t>(data.size());
    if (total % row_bytes || (data.ndim() == 2 && static_cast<int64_t>(data.shape(1)) != row_bytes))
        throw nb::value_error(("data rows must be " + std::to_string(row_bytes) + " bytes for " + qtype + " with " +
                               std::to_string(n_per_row) + " weights per row").c_str());
    const int64_t rows = total / row_bytes;
    float* out = nullptr;
    auto result = new_array<float>(static_cast<size_t>(rows), static_cast<size_t>(n_per_row), &out);
    const uint8_t* src = static_cast<const uint8_t*>(data.data());
    {
        nb::gil_scoped_release release;
        qp::parallel_for(rows, 0, [&](int64_t r0, int64_t r1) {
            for (int64_t r = r0; r < r1; ++r) f.dequantize(src + r * row_bytes, out + r * n_per_row, n_per_row);
        });
    }
    return nb::cast(result);
}

}  // namespace

NB_MODULE(native, m) {
    m.doc() = "quantpress native kernels (GGUF block quantization)";
    m.def("build_info", []() {
        nb::dict d;
        d["compiler"] = QP_COMPILER;
        d["build_type"] = QP_BUILD_TYPE;
        d["simd"] = qp::simd_level_name();
        d["threads_available"] = static_cast<int>(std::thread::hardware_concurrency());
        return d;
    }, "Compiler, build type, SIMD level chosen at run time and threads available.");

    m.def("formats", []() {
        nb::dict d;
        for (const qp::QuantFormat* f = qp::all_formats(); f->name; ++f)
            d[f->name] = nb::make_tuple(f->block_size, f->type_size);
        return d;
    }, "Natively supported GGML types: name -> (block_size, type_size).");

    m.def("quantize",
          [](const Array& x, const std::string& qtype, const nb::object& importance, int threads) {
              return quantize_impl(x, qtype, importance, threads, false);
          },
          nb::arg("x").noconvert(), nb::arg("qtype"), nb::arg("importance") = nb::none(), nb::arg("threads") = 0,
          "Quantize float32 (rows, n_per_row) C-contiguous rows to GGUF blocks: uint8 (rows, row_bytes).\n"
          "importance: optional float32 (n_per_row,) weights; threads=0 uses all cores (output does not\n"
          "depend on it). ValueError on wrong dtype/shape/row length/unknown type or NaN/Inf (names the row).");

    m.def("quantize_ref",
          [](const Array& x, const std::string& qtype, const nb::object& importance, int threads) {
              return quantize_impl(x, qtype, importance, threads, true);
          },
          nb::arg("x").noconvert(), nb::arg("qtype"), nb::arg("importance") = nb::none(), nb::arg("threads") = 0,
          "Like quantize() but with the scalar reference kernel (the slow twin the tests compare against).");

#ifdef QUANTPRESS_BENCH_HOOKS  // only in builds for benchmarks/auto_choice.py (native/CMakeLists.txt)
    m.def("_set_search_params", [](nb::dict kw, bool importance) {
        qp::SearchParams& p = qp::g_search[importance ? 1 : 0];
        for (auto [k, v] : kw) {
            const std::string key = nb::cast<std::string>(k);
            if (key == "q2_nstep") p.q2_nstep = nb::cast<int>(v);
            else if (key == "q2_rmin") p.q2_rmin = nb::cast<float>(v);
            else if (key == "q2_rdelta") p.q2_rdelta = nb::cast<float>(v);
            else if (key == "q4_nstep") p.q4_nstep = nb::cast<int>(v);
            else if (key == "q4_rmin") p.q4_rmin = nb::cast<float>(v);
            else if (key == "q4_rdelta") p.q4_rdelta = nb::cast<float>(v);
            else if (key == "q5_nstep") p.q5_nstep = nb::cast<int>(v);
            else if (key == "q5_rmin") p.q5_rmin = nb::cast<float>(v);
            else if (key == "q5_rdelta") p.q5_rdelta = nb::cast<float>(v);
            else if (key == "q3_ngrid") p.q3_ngrid = nb::cast<int>(v);
            else if (key == "q6_ngrid") p.q6_ngrid = nb::cast<int>(v);
            else if (key == "q3_step") p.q3_step = nb::cast<float>(v);
            else if (key == "q6_step") p.q6_step = nb::cast<float>(v);
            else if (key == "iq4_ngrid") p.iq4_ngrid = nb::cast<int>(v);
            else if (key == "lloyd") p.lloyd = nb::cast<int>(v);
            else if (key == "rounds") p.rounds = nb::cast<int>(v);
            else if (key == "q4_rounds") p.q4_rounds = nb::cast<int>(v);
            else if (key == "q4_window") p.q4_window = nb::cast<int>(v);
            else if (key == "q4_band") p.q4_band = nb::cast<int>(v);
            else if (key == "q5_window") p.q5_window = nb::cast<int>(v);
            else if (key == "q5_band") p.q5_band = nb::cast<int>(v);
            else if (key == "anchor_max") p.anchor_max = nb::cast<int>(v);
            else if (key == "magnitude") p.magnitude = nb::cast<int>(v);

            else throw nb::value_error(("unknown search parameter " + key).c_str());
        }
    }, nb::arg("params"), nb::arg("importance") = false,
       "Tuning hook for benchmarks/auto_choice.py (not thread-safe; never needed in normal use).");
#endif

    m.def("dequantize", &dequantize_impl, nb::arg("data").noconvert(), nb::arg("qtype"), nb::arg("n_per_row"),
          "Decode GGUF blocks (uint8, rows x row_bytes or flat) to float32 (rows, n_per_row).");
}
