#pragma once
// Input -> synapse routing (reference/paper.md §1.5; published create_input_to_synapse_indices).

#include <elmneuron/config.hpp>

#include "util/rng.hpp"

#include <cstdint>
#include <vector>

namespace elm::detail {

struct routing_table {
    std::vector<std::int64_t>
        index;  // input channel of each synapse, branch-major (synapse i of branch j at j·d_brch+i)
    std::vector<unsigned char> valid;  // 0 for synapses whose window position fell past the last input
};

// none: identity; random_routing: uniform channels with replacement from `gen`; neuronio_routing:
// interlocking (E/I of a segment side by side) overlapping windows with stride ceil(d_in/d_tree).
routing_table make_routing(const model_config& config, rng& gen);

}  // namespace elm::detail
