#include "model/routing.hpp"

#include <algorithm>

namespace elm::detail {

routing_table make_routing(const model_config& c, rng& gen) {
    const int n = c.num_input, S = c.num_synapse(), d_tree = c.branches(), d_brch = c.num_synapse_per_branch;
    routing_table r;
    r.index.resize(static_cast<std::size_t>(S));
    r.valid.assign(static_cast<std::size_t>(S), 1);
    switch (c.input_to_synapse_routing) {
        case routing::none:
            for (int i = 0; i < S; ++i) r.index[i] = i;
            break;
        case routing::random:
            for (auto& v : r.index) v = static_cast<std::int64_t>(gen.below(static_cast<std::uint64_t>(n)));
            break;
        case routing::neuronio: {
            // Interlocking: inter[i] = (i mod 2)·(n/2) + floor(i/2) -> 0, n/2, 1, n/2+1, ...
            std::vector<std::int64_t> inter(static_cast<std::size_t>(n));
            for (int i = 0; i < n; ++i) inter[i] = (i % 2) * (n / 2) + i / 2;
            // Overlapping windows: branch j takes positions j·stride + k, k < d_brch; positions past the
            // last input are clamped to n-1 and masked out (published create_overlapping_window_indices).
            const int stride = (n + d_tree - 1) / d_tree;
            for (int j = 0; j < d_tree; ++j)
                for (int k = 0; k < d_brch; ++k) {
                    const std::int64_t pos = static_cast<std::int64_t>(j) * stride + k;
                    const auto i = static_cast<std::size_t>(j * d_brch + k);
                    r.valid[i] = pos < n;
                    r.index[i] = inter[static_cast<std::size_t>(std::min<std::int64_t>(pos, n - 1))];
                }
            break;
        }
    }
    return r;
}

}  // namespace elm::detail
