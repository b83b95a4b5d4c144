#include "quantpress/parallel.h"

#include <algorithm>
#include <thread>
#include <vector>

namespace qp {

int resolve_threads(int threads) {
    if (threads > 0) return threads;
    const unsigned hc = std::thread::hardware_concurrency();
    return hc ? static_cast<int>(hc) : 1;
}

void parallel_for(int64_t n, int threads, const std::function<void(int64_t, int64_t)>& fn) {
    const int64_t t = std::min<int64_t>(resolve_threads(threads), n);
    if (t <= 1) {
        if (n > 0) fn(0, n);
        return;
    }
    std::vector<std::thread> pool;
    pool.reserve(static_cast<size_t>(t - 1));
    const int64_t chunk = n / t, extra = n % t;
    int64_t begin = 0;
    int64_t first_end = 0;
    for (int64_t i = 0; i < t; ++i) {
        const int64_t end = begin + chunk + (i < extra ? 1 : 0);
        if (i == 0) first_end = end;
        else pool.emplace_back(fn, begin, end);
        begin = end;
    }
    fn(0, first_end);  // the calling thread does the first chunk
    for (auto& th : pool) th.join();
}

}  // namespace qp
