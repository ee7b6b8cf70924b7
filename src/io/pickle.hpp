#pragma once
// A restricted unpickler (Python pickle protocols 1-5 and part of 0, the opcodes that data files use,
// protocol 5's buffers in-band only) that builds a value tree and never executes anything:
// GLOBAL/STACK_GLOBAL are only accepted for (module, name) pairs the caller allows, and REDUCE/NEWOBJ/BUILD
// become tree nodes that the caller interprets. Used for PyTorch state dicts (torch_pt.cpp) and the NeuronIO
// dataset pickles (Python-2 protocol 2, numpy _reconstruct/dtype/scalar globals, _frombuffer at protocol 5;
// reference/datasets.md §1.4).
//
// Memory: every node is 16 bytes; strings and bytes are views into the input buffer (no copies), so the
// caller keeps the input alive as long as the tree. Node count, memo size and container sizes are all
// bounded by the input length (every push costs at least one input byte). The parser has no recursion.
//
// Object identity follows Python: the memo, DUP and containers refer to nodes by index, so an object
// mutated after it was memoized (APPENDS/SETITEMS/BUILD) is seen mutated through every reference.

#include <elmneuron/error.hpp>

#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace elm::detail {

enum class pickle_kind : std::uint8_t {
    none,
    boolean,
    integer,   // int64 (LONG1/LONG4 beyond int64 are rejected)
    floating,  // double
    string,    // str: UTF-8 (BINUNICODE*) or raw py2 bytes (BINSTRING*, flag latin1)
    bytes,     // BINBYTES*, BYTEARRAY8
    tuple,
    list,
    dict,           // ordered (key, value) pairs; also collections.OrderedDict() when allowed
    global,         // children: module string, name string
    reduce,         // children: callable, args (REDUCE; NEWOBJ sets the newobj flag)
    build,          // children: object, state (BUILD replaces the object node in place)
    persistent_id,  // child: the persistent id value (BINPERSID)
};

const char* to_string(pickle_kind k);

using pickle_ref = std::uint32_t;  // index of a node in pickle_tree::nodes

struct pickle_node {
    pickle_kind kind = pickle_kind::none;
    std::uint8_t flags = 0;     // flag_latin1 (string from py2 str), flag_newobj (reduce from NEWOBJ)
    std::uint32_t count = 0;    // string/bytes: length; tuple/global/reduce/build/persid: child count
    std::uint64_t payload = 0;  // int bits, double bits, input offset, child-pool offset, container index
};

inline constexpr std::uint8_t flag_latin1 = 1;
inline constexpr std::uint8_t flag_newobj = 2;

struct pickle_global {
    std::string_view module, name;
};

class pickle_tree {
public:
    std::string source;                // for error messages
    std::span<const std::byte> input;  // strings/bytes point into this
    std::vector<pickle_node> nodes;
    std::vector<pickle_ref> pool;                     // children of immutable nodes
    std::vector<std::vector<pickle_ref>> containers;  // children of lists and dicts (k, v, k, v, ...)
    pickle_ref root = 0;

    const pickle_node& node(pickle_ref r) const { return nodes[r]; }
    pickle_kind kind(pickle_ref r) const { return nodes[r].kind; }
    // Children of a tuple, list, dict (k, v, k, v, ...), global, reduce, build or persistent_id node.
    std::span<const pickle_ref> children(pickle_ref r) const;

    // Typed accessors: each throws elm::error (source, `what`) if the node has another kind.
    bool as_bool(pickle_ref r, std::string_view what) const;
    std::int64_t as_int(pickle_ref r, std::string_view what) const;
    double as_float(pickle_ref r, std::string_view what) const;                      // also accepts integers
    std::string_view as_string(pickle_ref r, std::string_view what) const;           // raw bytes of a str
    std::span<const std::byte> as_bytes(pickle_ref r, std::string_view what) const;  // bytes or py2 str
    std::span<const pickle_ref> as_tuple(pickle_ref r, std::string_view what) const;
    std::span<const pickle_ref> as_list(pickle_ref r, std::string_view what) const;
    pickle_global as_global(pickle_ref r, std::string_view what) const;
    bool is_global(pickle_ref r, std::string_view module, std::string_view name) const;

    // Number of (key, value) pairs of a dict and the i-th pair.
    std::size_t dict_size(pickle_ref dict, std::string_view what) const;
    std::pair<pickle_ref, pickle_ref> dict_item(pickle_ref dict, std::size_t i) const;
    // Value of the first entry whose key is this string; nullptr-like: returns false if absent.
    bool dict_find(pickle_ref dict, std::string_view key, pickle_ref& value, std::string_view what) const;
    pickle_ref dict_at(pickle_ref dict, std::string_view key,
                       std::string_view what) const;  // throws if absent

    // Short human-readable rendering (depth- and length-limited; cycles are safe), for error messages.
    std::string describe(pickle_ref r, int depth = 2) const;

    [[noreturn]] void fail(std::string_view what, std::string expected, std::string got) const;
};

struct unpickle_options {
    // (module, name) pairs that GLOBAL/STACK_GLOBAL may name; anything else is an elm::error.
    std::vector<std::pair<std::string, std::string>> allowed_globals;
    // REDUCE(collections.OrderedDict, ()) becomes an empty dict (needed for SETITEMS on state dicts).
    bool ordered_dict_as_dict = true;
};

// Parses one pickle (up to STOP; trailing bytes are ignored, as pickle.load does). Throws elm::error
// naming `source`, the opcode and its byte offset on anything malformed or not allowed.
pickle_tree unpickle(std::span<const std::byte> input, std::string_view source,
                     const unpickle_options& options);

}  // namespace elm::detail
