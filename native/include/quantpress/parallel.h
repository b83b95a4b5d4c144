#pragma once
// Split [0, n) into contiguous chunks, one per thread; fn(begin, end) runs on each.
// Results never depend on the thread count because every row is computed independently.
#include <cstdint>
#include <functional>

namespace qp {
// threads <= 0 means all hardware threads. Never starts more threads than there are rows.
void parallel_for(int64_t n, int threads, const std::function<void(int64_t, int64_t)>& fn);
int resolve_threads(int threads);
}  // namespace qp
