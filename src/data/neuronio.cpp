// NeuronIO simulation pickles and their converted cache: see neuronio.hpp, reference/datasets.md §1.4-1.5.
//
// numpy objects arrive as the restricted unpickler's tree nodes, never as calls:
//   array  = BUILD(REDUCE(_reconstruct, (ndarray, (0,), 'b')), (1, shape, dtype, is_fortran, raw))
//            or, at pickle protocol 5 (Python >= 3.14's default), REDUCE(_frombuffer, (raw, dtype, shape,
//            order)) with raw in-band (BYTEARRAY8, or BINBYTES for a read-only array)
//   dtype  = BUILD(REDUCE(dtype, ('f2', False|0, True|1)), (3, '<', None, None, None, -1, -1, 0))
//   scalar = REDUCE(scalar, (dtype, raw))
// raw is a Python-2 str (BINSTRING; the originals), or from Python 3: _codecs.encode(u'...', 'latin1')
// (the bytes as code points < 256, UTF-8 encoded in the pickle) or bytes() for an empty buffer.

#include <elmneuron/neuronio.hpp>

#include <elmneuron/error.hpp>
#include <elmneuron/tensor_file.hpp>

#include <algorithm>
#include <bit>
#include <cctype>
#include <cerrno>
#include <charconv>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <limits>
#include <map>

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "io/io_detail.hpp"
#include "io/pickle.hpp"

namespace elm {
namespace {

namespace fs = std::filesystem;
using detail::pickle_kind;
using detail::pickle_ref;
using detail::pickle_tree;

const std::string sims_path = "Results.listOfSingleSimulationDicts";
constexpr std::string_view multiarray_modules[] = {"numpy.core.multiarray",
                                                   "numpy._core.multiarray"};  // numpy < 2, >= 2
constexpr std::string_view numeric_modules[] = {"numpy.core.numeric", "numpy._core.numeric"};

detail::unpickle_options neuronio_options() {
    detail::unpickle_options o;
    for (const auto m : multiarray_modules) {
        o.allowed_globals.emplace_back(std::string(m), "_reconstruct");
        o.allowed_globals.emplace_back(std::string(m), "scalar");
    }
    for (const auto m : numeric_modules) o.allowed_globals.emplace_back(std::string(m), "_frombuffer");
    o.allowed_globals.emplace_back("numpy", "ndarray");
    o.allowed_globals.emplace_back("numpy", "dtype");
    o.allowed_globals.emplace_back("_codecs", "encode");     // Python 3 bytes at protocol 2
    o.allowed_globals.emplace_back("__builtin__", "bytes");  // Python 3 b'' at protocol 2
    o.allowed_globals.emplace_back("builtins", "bytes");
    o.ordered_dict_as_dict = false;
    return o;
}

struct np_dtype {
    char kind = 0;  // 'f', 'i', 'u', 'b'
    std::uint8_t size = 0;
    bool big_endian = false;
};

std::string dtype_name(np_dtype d) {
    return std::string(1, d.big_endian ? '>' : '<') + d.kind + std::to_string(d.size);
}

std::uint64_t load_bits(const std::byte* p, std::size_t n, bool big_endian) {
    std::uint64_t v = 0;
    for (std::size_t i = 0; i < n; ++i) {
        const auto b = std::to_integer<std::uint64_t>(p[big_endian ? n - 1 - i : i]);
        v |= b << (8 * i);
    }
    return v;
}

// An integer element of an integer dtype; false if it does not fit int64 (u8 above 2^63 - 1).
bool int_element(const std::byte* p, np_dtype d, std::int64_t& out) {
    const auto bits = load_bits(p, d.size, d.big_endian);
    if (d.kind == 'u') {
        if (bits > std::uint64_t(std::numeric_limits<std::int64_t>::max())) return false;
        out = static_cast<std::int64_t>(bits);
        return true;
    }
    const unsigned shift = 64u - 8u * d.size;  // sign-extend
    out = static_cast<std::int64_t>(bits << shift) >> shift;
    return true;
}

double float_element(const std::byte* p, np_dtype d) {
    const auto bits = load_bits(p, d.size, d.big_endian);
    switch (d.kind) {
        case 'f':
            if (d.size == 2) return detail::half_to_float(static_cast<std::uint16_t>(bits));
            if (d.size == 4) return std::bit_cast<float>(static_cast<std::uint32_t>(bits));
            return std::bit_cast<double>(bits);
        case 'b':
            return bits != 0 ? 1.0 : 0.0;
        case 'u':
            return static_cast<double>(bits);
        default: {
            std::int64_t v = 0;
            int_element(p, d, v);
            return static_cast<double>(v);
        }
    }
}

// Interprets numpy nodes of one tree. `path` arguments are callables returning the key path, so the
// hot loops over ~10^7 spike times build no strings unless something is wrong.
class numpy_reader {
public:
    explicit numpy_reader(const pickle_tree& t) : t_(t) {}

    const pickle_tree& tree() const { return t_; }

    [[noreturn]] void fail(const std::string& path, std::string expected, std::string got) const {
        throw elm::error(t_.source, path, std::move(expected), std::move(got));
    }
    std::string describe(pickle_ref r) const { return t_.describe(r, 1); }

    bool is_multiarray(pickle_ref r, std::string_view name) const {
        for (const auto m : multiarray_modules)
            if (t_.is_global(r, m, name)) return true;
        return false;
    }
    bool is_frombuffer(pickle_ref r) const {
        for (const auto m : numeric_modules)
            if (t_.is_global(r, m, "_frombuffer")) return true;
        return false;
    }

    // A bytes-like value: Python-2 str, bytes, _codecs.encode(str, 'latin1') or bytes(). The span views the
    // input or `storage`.
    template <class P>
    std::span<const std::byte> raw(pickle_ref r, std::vector<std::byte>& storage, const P& path) const {
        const auto& n = t_.node(r);
        if (n.kind == pickle_kind::bytes ||
            (n.kind == pickle_kind::string && (n.flags & detail::flag_latin1) != 0))
            return t_.as_bytes(r, "raw");
        if (n.kind == pickle_kind::reduce) {
            const auto c = t_.children(r);
            const auto args =
                t_.kind(c[1]) == pickle_kind::tuple ? t_.children(c[1]) : std::span<const pickle_ref>{};
            if ((t_.is_global(c[0], "__builtin__", "bytes") || t_.is_global(c[0], "builtins", "bytes")) &&
                args.empty()) {
                storage.clear();
                return {};
            }
            if (t_.is_global(c[0], "_codecs", "encode") && args.size() == 2 &&
                t_.kind(args[0]) == pickle_kind::string && t_.kind(args[1]) == pickle_kind::string &&
                (t_.as_string(args[1], "encoding") == "latin1" ||
                 t_.as_string(args[1], "encoding") == "latin-1")) {
                const auto s = t_.as_string(args[0], "raw");
                if ((t_.node(args[0]).flags & detail::flag_latin1) != 0) return t_.as_bytes(args[0], "raw");
                storage.clear();
                storage.reserve(s.size());
                for (std::size_t i = 0; i < s.size(); ++i) {  // UTF-8 of code points < 256 -> latin1 bytes
                    const auto b = static_cast<unsigned char>(s[i]);
                    if (b < 0x80) {
                        storage.push_back(std::byte(b));
                    } else if ((b == 0xc2 || b == 0xc3) && i + 1 < s.size() &&
                               (static_cast<unsigned char>(s[i + 1]) & 0xc0) == 0x80) {
                        storage.push_back(
                            std::byte(((b & 3u) << 6) | (static_cast<unsigned char>(s[i + 1]) & 0x3fu)));
                        ++i;
                    } else {
                        fail(path(), "latin1 text (code points < 256) in _codecs.encode",
                             "byte " + std::to_string(b) + " at " + std::to_string(i));
                    }
                }
                return storage;
            }
        }
        fail(path(), "raw bytes (a str, bytes or _codecs.encode(str, 'latin1'))", describe(r));
    }

    template <class P>
    np_dtype dtype(pickle_ref r, const P& path) const {
        if (r == last_dtype_ref_) return last_dtype_;
        const auto bad = [&](const std::string& why) {
            fail(path(), "a numpy dtype of kind f2/f4/f8, i1-i8, u1-u8 or b1", why + ": " + describe(r));
        };
        if (t_.kind(r) != pickle_kind::build) bad("not a built dtype");
        const auto c = t_.children(r);
        if (t_.kind(c[0]) != pickle_kind::reduce || !t_.is_global(t_.children(c[0])[0], "numpy", "dtype"))
            bad("not numpy.dtype");
        const auto args = t_.children(t_.children(c[0])[1]);
        if (args.empty() || t_.kind(args[0]) != pickle_kind::string) bad("no type string");
        const auto code = t_.as_string(args[0], "dtype");
        np_dtype d;
        if (code.size() == 2 && code[1] >= '1' && code[1] <= '8') {
            d.kind = code[0];
            d.size = static_cast<std::uint8_t>(code[1] - '0');
        }
        const bool ok = (d.kind == 'f' && (d.size == 2 || d.size == 4 || d.size == 8)) ||
                        ((d.kind == 'i' || d.kind == 'u') && std::has_single_bit(unsigned(d.size))) ||
                        (d.kind == 'b' && d.size == 1);
        if (!ok) bad("type '" + std::string(code) + "'");
        if (t_.kind(c[1]) != pickle_kind::tuple) bad("state is not a tuple");
        const auto state = t_.children(c[1]);
        if (state.size() < 5 || t_.kind(state[0]) != pickle_kind::integer ||
            t_.kind(state[1]) != pickle_kind::string)
            bad("state is not (version, endian, ...)");
        const auto version = t_.as_int(state[0], "dtype version");
        if (version != 3 && version != 4) bad("state version " + std::to_string(version));
        for (std::size_t i = 2; i < 5; ++i)
            if (t_.kind(state[i]) != pickle_kind::none) bad("a subarray or structured dtype");
        const auto endian = t_.as_string(state[1], "endian");
        if (endian == ">")
            d.big_endian = true;
        else if (!(endian == "<" || (endian == "|" && d.size == 1)))
            bad("byte order '" + std::string(endian) + "'");
        last_dtype_ref_ = r;
        last_dtype_ = d;
        return d;
    }

    // A Python int or a numpy integer scalar.
    template <class P>
    std::int64_t integer(pickle_ref r, const P& path) const {
        const auto& n = t_.node(r);
        if (n.kind == pickle_kind::integer) return static_cast<std::int64_t>(n.payload);
        if (n.kind == pickle_kind::reduce) {
            np_dtype d;
            const auto b = scalar(r, d, path);
            std::int64_t v = 0;
            if ((d.kind == 'i' || d.kind == 'u') && int_element(b.data(), d, v)) return v;
            fail(path(), "an integer", "a numpy " + dtype_name(d) + " scalar");
        }
        fail(path(), "an integer (int or numpy integer scalar)", describe(r));
    }

    // A Python int/float or numpy numeric scalar.
    template <class P>
    double number(pickle_ref r, const P& path) const {
        const auto k = t_.kind(r);
        if (k == pickle_kind::integer || k == pickle_kind::floating) return t_.as_float(r, "number");
        if (k == pickle_kind::reduce) {
            np_dtype d;
            const auto b = scalar(r, d, path);
            return float_element(b.data(), d);
        }
        fail(path(), "a number", describe(r));
    }

    // Whether `r` is a pickled ndarray (either form of the header comment), whatever its contents.
    bool is_ndarray(pickle_ref r) const {
        const auto k = t_.kind(r);
        if (k == pickle_kind::reduce) return is_frombuffer(t_.children(r)[0]);
        return k == pickle_kind::build && t_.kind(t_.children(r)[0]) == pickle_kind::reduce &&
               is_multiarray(t_.children(t_.children(r)[0])[0], "_reconstruct");
    }

    // A 1-D numeric ndarray, elements as double (exact for f2/f4/f8 and integers below 2^53); its dtype in
    // `dtype_out` if given.
    template <class P>
    std::vector<double> vector(pickle_ref r, const P& path, np_dtype* dtype_out = nullptr) const {
        const auto bad = [&](const std::string& why) {
            fail(path(), "a 1-D numpy array", why + ": " + describe(r));
        };
        // Either form (header comment) gives the same four parts; the order flag is irrelevant for 1-D data
        // but must be one.
        pickle_ref shape_ref = 0, dtype_ref = 0, raw_ref = 0;
        if (t_.kind(r) == pickle_kind::reduce && is_frombuffer(t_.children(r)[0])) {
            const auto args = t_.children(t_.children(r)[1]);  // REDUCE arguments are always a tuple
            if (args.size() != 4) bad("_frombuffer arguments are not (buffer, dtype, shape, order)");
            if (t_.kind(args[3]) != pickle_kind::string ||
                (t_.as_string(args[3], "order") != "C" && t_.as_string(args[3], "order") != "F"))
                bad("order is not 'C' or 'F'");
            raw_ref = args[0];
            dtype_ref = args[1];
            shape_ref = args[2];
        } else {
            if (t_.kind(r) != pickle_kind::build) bad("not an ndarray");
            const auto c = t_.children(r);
            if (t_.kind(c[0]) != pickle_kind::reduce || !is_multiarray(t_.children(c[0])[0], "_reconstruct"))
                bad("not an ndarray");
            const auto rargs = t_.children(t_.children(c[0])[1]);
            if (rargs.empty() || !t_.is_global(rargs[0], "numpy", "ndarray")) bad("not a numpy.ndarray");
            if (t_.kind(c[1]) != pickle_kind::tuple) bad("state is not a tuple");
            auto state = t_.children(c[1]);
            if (state.size() ==
                5) {  // (version, shape, dtype, is_fortran, raw); numpy also reads the 4-tuple form
                if (t_.kind(state[0]) != pickle_kind::integer || t_.as_int(state[0], "version") != 1)
                    bad("state version is not 1");
                state = state.subspan(1);
            }
            if (state.size() != 4) bad("state is not (version, shape, dtype, is_fortran, raw)");
            if (!(t_.kind(state[2]) == pickle_kind::boolean ||
                  (t_.kind(state[2]) == pickle_kind::integer && t_.as_int(state[2], "fortran") >= 0 &&
                   t_.as_int(state[2], "fortran") <= 1)))
                bad("is_fortran is not a bool");
            shape_ref = state[0];
            dtype_ref = state[1];
            raw_ref = state[3];
        }
        if (t_.kind(shape_ref) != pickle_kind::tuple) bad("shape is not a tuple");
        const auto shape = t_.children(shape_ref);
        if (shape.size() != 1 || t_.kind(shape[0]) != pickle_kind::integer)
            bad("shape " + describe(shape_ref) + " is not (n,)");
        const auto n = t_.as_int(shape[0], "shape");
        if (n < 0) bad("negative shape");
        const auto d = dtype(dtype_ref, path);
        if (dtype_out != nullptr) *dtype_out = d;
        const auto bytes = raw(raw_ref, storage_, path);
        if (static_cast<std::uint64_t>(n) != bytes.size() / d.size || bytes.size() % d.size != 0)
            fail(path(),
                 std::to_string(n) + " x " + std::to_string(int(d.size)) + " data bytes for shape (" +
                     std::to_string(n) + ",)",
                 std::to_string(bytes.size()) + " bytes");
        std::vector<double> out(static_cast<std::size_t>(n));
        for (std::size_t i = 0; i < out.size(); ++i) out[i] = float_element(bytes.data() + i * d.size, d);
        return out;
    }

private:
    // Raw bytes of a numpy scalar (exactly dtype.size of them) and its dtype.
    template <class P>
    std::span<const std::byte> scalar(pickle_ref r, np_dtype& d, const P& path) const {
        const auto c = t_.children(r);
        if (c[0] != last_scalar_ref_) {
            if (!is_multiarray(c[0], "scalar"))
                fail(path(), "a number (int, float or numpy scalar)", describe(r));
            last_scalar_ref_ = c[0];
        }
        const auto args = t_.children(c[1]);  // REDUCE arguments are always a tuple
        if (args.size() != 2) fail(path(), "numpy scalar arguments (dtype, raw bytes)", describe(r));
        d = dtype(args[0], path);
        const auto b = raw(args[1], scalar_storage_, path);
        if (b.size() != d.size)
            fail(path(), std::to_string(int(d.size)) + " bytes for a numpy " + dtype_name(d) + " scalar",
                 std::to_string(b.size()) + " bytes");
        return b;
    }

    const pickle_tree& t_;
    mutable pickle_ref last_dtype_ref_ = std::numeric_limits<pickle_ref>::max();
    mutable pickle_ref last_scalar_ref_ = std::numeric_limits<pickle_ref>::max();
    mutable np_dtype last_dtype_{};
    mutable std::vector<std::byte> storage_, scalar_storage_;
};

// Value of `key` in dict `d` (the last entry wins, as when Python builds the dict).
bool find_key(const pickle_tree& t, pickle_ref d, std::string_view key, pickle_ref& value) {
    const auto c = t.children(d);
    bool found = false;
    for (std::size_t i = 0; i + 1 < c.size(); i += 2)
        if (t.kind(c[i]) == pickle_kind::string && t.as_string(c[i], "key") == key) {
            value = c[i + 1];
            found = true;
        }
    return found;
}

void require_dict(const numpy_reader& rd, pickle_ref r, const std::string& path) {
    if (rd.tree().kind(r) != pickle_kind::dict) rd.fail(path, "a dict", rd.describe(r));
}

pickle_ref at(const numpy_reader& rd, pickle_ref d, std::string_view key, const std::string& dict_path) {
    pickle_ref v = 0;
    if (!find_key(rd.tree(), d, key, v))
        rd.fail(dict_path.empty() ? std::string(key) : dict_path + "." + std::string(key),
                "a key '" + std::string(key) + "'", "no such key in " + rd.describe(d));
    return v;
}

std::span<const pickle_ref> list_items(const numpy_reader& rd, pickle_ref r, const std::string& path) {
    const auto k = rd.tree().kind(r);
    if (k != pickle_kind::list && k != pickle_kind::tuple) rd.fail(path, "a list", rd.describe(r));
    return rd.tree().children(r);
}

// Sorted unique (time, channel) pairs packed as time << 32 | channel.
void add_inputs(const numpy_reader& rd, pickle_ref d, const std::string& path, int num_segments, int duration,
                int channel0, std::vector<std::uint64_t>& events) {
    const auto& t = rd.tree();
    require_dict(rd, d, path);
    std::vector<std::uint8_t> seen(static_cast<std::size_t>(num_segments), 0);
    const auto c = t.children(d);
    for (std::size_t k = 0; k + 1 < c.size(); k += 2) {
        const auto seg = rd.integer(c[k], [&] { return path + "{key #" + std::to_string(k / 2) + "}"; });
        if (seg < 0 || seg >= num_segments)
            rd.fail(path + "[" + std::to_string(seg) + "]",
                    "a segment index in [0, " + std::to_string(num_segments) + ")", std::to_string(seg));
        if (seen[std::size_t(seg)]++ != 0)
            rd.fail(path + "[" + std::to_string(seg) + "]", "each segment once", "a repeated key");
        const auto seg_path = [&] { return path + "[" + std::to_string(seg) + "]"; };
        const auto v = c[k + 1];
        const auto channel = static_cast<std::uint64_t>(channel0 + seg);
        // Item j's time, an integer (exact in a double up to 2^53).
        const auto add = [&](double time, std::size_t j) {
            if (!(time >= 0 && time < duration)) {
                char shown[32];
                std::snprintf(shown, sizeof shown, "%.0f", time);
                rd.fail(seg_path() + "[" + std::to_string(j) + "]",
                        "an input time in [0, " + std::to_string(duration) + ") ms", shown);
            }
            events.push_back((static_cast<std::uint64_t>(time) << 32) | channel);
        };
        if (rd.is_ndarray(v)) {
            // The published writer stores a list; the published conversion (dict2bin) indexes with each
            // time in turn, which takes the items of an integer array as well (a float item is an
            // IndexError there, an empty array of any type passes).
            np_dtype type;
            const auto times = rd.vector(v, seg_path, &type);
            if (type.kind != 'i' && type.kind != 'u' && !times.empty())
                rd.fail(seg_path(), "spike times as a list or an integer array",
                        "a " + dtype_name(type) + " array");
            for (std::size_t j = 0; j < times.size(); ++j) add(times[j], j);
            continue;
        }
        const auto vk = t.kind(v);
        if (vk != pickle_kind::list && vk != pickle_kind::tuple)
            rd.fail(seg_path(), "spike times as a list or an integer array", rd.describe(v));
        const auto times = t.children(v);
        for (std::size_t j = 0; j < times.size(); ++j)
            add(static_cast<double>(
                    rd.integer(times[j], [&] { return seg_path() + "[" + std::to_string(j) + "]"; })),
                j);
    }
}

// Sorts packed events by (time, channel): two stable counting passes (channel, then time), O(n + C + D);
// std::sort took a tenth of the reading time.
void sort_events(std::vector<std::uint64_t>& events, std::vector<std::uint64_t>& scratch,
                 std::vector<std::size_t>& counts, std::size_t channels, std::size_t duration) {
    scratch.resize(events.size());
    const auto pass = [&](const std::vector<std::uint64_t>& from, std::vector<std::uint64_t>& to,
                          std::size_t buckets, auto key) {
        counts.assign(buckets + 1, 0);
        for (const auto e : from) ++counts[key(e) + 1];
        for (std::size_t b = 0; b < buckets; ++b) counts[b + 1] += counts[b];
        for (const auto e : from) to[counts[key(e)]++] = e;
    };
    pass(events, scratch, channels,
         [](std::uint64_t e) { return static_cast<std::size_t>(e & 0xffffffffu); });
    pass(scratch, events, duration, [](std::uint64_t e) { return static_cast<std::size_t>(e >> 32); });
}

neuronio_file interpret(const pickle_tree& t) {
    const numpy_reader rd(t);
    neuronio_file out;
    out.source = t.source;
    require_dict(rd, t.root, "(top level)");

    const auto params = at(rd, t.root, "Params", "");
    require_dict(rd, params, "Params");
    const auto seg_types =
        list_items(rd, at(rd, params, "allSegmentsType", "Params"), "Params.allSegmentsType");
    if (seg_types.empty() || seg_types.size() > std::size_t(std::numeric_limits<std::int32_t>::max() / 2))
        rd.fail("Params.allSegmentsType", "1 to 2^30 segment types", std::to_string(seg_types.size()));
    for (std::size_t i = 0; i < seg_types.size(); ++i)
        if (t.kind(seg_types[i]) != pickle_kind::string)
            rd.fail("Params.allSegmentsType[" + std::to_string(i) + "]", "a str ('basal'/'apical')",
                    rd.describe(seg_types[i]));
    out.num_segments = static_cast<int>(seg_types.size());

    const auto results = at(rd, t.root, "Results", "");
    require_dict(rd, results, "Results");
    const auto sims = list_items(rd, at(rd, results, "listOfSingleSimulationDicts", "Results"), sims_path);
    if (sims.empty()) rd.fail(sims_path, "at least one simulation", "an empty list");
    pickle_ref v = 0;
    if (find_key(t, params, "numSimulations", v)) {
        const auto n = rd.integer(v, [] { return std::string("Params.numSimulations"); });
        if (n != static_cast<std::int64_t>(sims.size()))
            rd.fail("Params.numSimulations",
                    "the number of simulation dicts (" + std::to_string(sims.size()) + ")",
                    std::to_string(n));
    }

    out.simulations.resize(sims.size());
    std::vector<std::uint64_t> events, scratch;
    std::vector<std::size_t> counts;
    for (std::size_t i = 0; i < sims.size(); ++i) {
        const auto path = sims_path + "[" + std::to_string(i) + "]";
        const auto sim = sims[i];
        require_dict(rd, sim, path);
        auto& s = out.simulations[i];

        const auto soma_path = path + ".somaVoltageLowRes";
        const auto soma = rd.vector(at(rd, sim, "somaVoltageLowRes", path), [&] { return soma_path; });
        if (i == 0) {
            if (soma.empty() || soma.size() > std::size_t(std::numeric_limits<std::int32_t>::max()))
                rd.fail(soma_path, "1 to 2^31 - 1 samples", std::to_string(soma.size()));
            out.duration_ms = static_cast<int>(soma.size());
        } else if (soma.size() != std::size_t(out.duration_ms)) {
            rd.fail(soma_path, std::to_string(out.duration_ms) + " samples (as simulation 0)",
                    std::to_string(soma.size()));
        }
        s.soma_mv.resize(soma.size());
        for (std::size_t k = 0; k < soma.size(); ++k) {
            if (!std::isfinite(soma[k]))
                rd.fail(soma_path + "[" + std::to_string(k) + "]", "a finite voltage",
                        std::to_string(soma[k]));
            s.soma_mv[k] = static_cast<float>(soma[k]);
        }

        const auto out_path = path + ".outputSpikeTimes";
        const auto spikes = rd.vector(at(rd, sim, "outputSpikeTimes", path), [&] { return out_path; });
        s.spike.assign(std::size_t(out.duration_ms), 0);
        for (std::size_t k = 0; k < spikes.size(); ++k) {
            const double st = spikes[k];
            // int(t - 0.5) as the published conversion: Python's int() truncates toward zero, so a spike in
            // the first half millisecond (0 <= t < 0.5) lands in bin 0 too.
            if (!(std::isfinite(st) && st >= 0 && st - 0.5 < double(out.duration_ms)))
                rd.fail(out_path + "[" + std::to_string(k) + "]",
                        "a spike time t with 0 <= t < " + std::to_string(out.duration_ms) + ".5 ms",
                        std::to_string(st));
            s.spike[static_cast<std::size_t>(std::max(st - 0.5, 0.0))] = 1;
        }

        events.clear();
        add_inputs(rd, at(rd, sim, "exInputSpikeTimes", path), path + ".exInputSpikeTimes", out.num_segments,
                   out.duration_ms, 0, events);
        add_inputs(rd, at(rd, sim, "inhInputSpikeTimes", path), path + ".inhInputSpikeTimes",
                   out.num_segments, out.duration_ms, out.num_segments, events);
        sort_events(events, scratch, counts, std::size_t(out.num_channels()), std::size_t(out.duration_ms));
        events.erase(std::unique(events.begin(), events.end()), events.end());  // X[t][c] = 1 is idempotent
        s.event_time.resize(events.size());
        s.event_channel.resize(events.size());
        for (std::size_t k = 0; k < events.size(); ++k) {
            s.event_time[k] = static_cast<std::int32_t>(events[k] >> 32);
            s.event_channel[k] = static_cast<std::int32_t>(events[k] & 0xffffffffu);
        }
    }

    if (find_key(t, params, "totalSimDurationInSec", v)) {
        const double sec = rd.number(v, [] { return std::string("Params.totalSimDurationInSec"); });
        if (!(std::isfinite(sec) && sec * 1000.0 == double(out.duration_ms)))
            rd.fail("Params.totalSimDurationInSec",
                    std::to_string(out.duration_ms) + " ms (the length of somaVoltageLowRes)",
                    std::to_string(sec) + " s");
    }
    return out;
}

// Read-only memory map of a whole file (the pages of skipped arrays are never touched).
class mapped_file {
public:
    explicit mapped_file(const std::string& path) {
        std::error_code ec;
        const auto st = fs::status(path, ec);
        if (ec || !fs::exists(st)) throw file_not_found_error(path);
        if (fs::is_directory(st)) throw elm::error(path, "path", "a file", "a directory");
        const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
        if (fd < 0) {
            if (errno == ENOENT) throw file_not_found_error(path);
            throw elm::error(path, "path", "a readable file", std::strerror(errno));
        }
        struct stat sb {};
        if (::fstat(fd, &sb) != 0 || !S_ISREG(sb.st_mode)) {
            ::close(fd);
            throw elm::error(path, "path", "a regular file", "something else");
        }
        size_ = static_cast<std::size_t>(sb.st_size);
        if (size_ > 0) {
            void* p = ::mmap(nullptr, size_, PROT_READ, MAP_PRIVATE, fd, 0);
            if (p == MAP_FAILED) {
                const std::string msg = std::strerror(errno);
                ::close(fd);
                throw elm::error(path, "path", "a file that can be memory-mapped", msg);
            }
            data_ = p;
        }
        ::close(fd);
    }
    ~mapped_file() {
        if (data_ != nullptr) ::munmap(data_, size_);
    }
    mapped_file(const mapped_file&) = delete;
    mapped_file& operator=(const mapped_file&) = delete;

    std::span<const std::byte> bytes() const { return {static_cast<const std::byte*>(data_), size_}; }

private:
    void* data_ = nullptr;
    std::size_t size_ = 0;
};

// ------------------------------------------------------------------------------------------------------
// Cache

constexpr std::string_view cache_format = "elmneuron.neuronio.v1";

// Everything read_neuronio_file guarantees; `where` names the file in errors.
void validate(const neuronio_file& f, const std::string& where) {
    const auto fail = [&](const std::string& field, std::string expected, std::string got) {
        throw elm::error(where, field, std::move(expected), std::move(got));
    };
    if (f.num_segments < 1 || f.num_segments > std::numeric_limits<std::int32_t>::max() / 2)
        fail("num_segments", "1 to 2^30", std::to_string(f.num_segments));
    if (f.duration_ms < 1) fail("duration_ms", "at least 1", std::to_string(f.duration_ms));
    const auto d = std::size_t(f.duration_ms);
    for (std::size_t i = 0; i < f.simulations.size(); ++i) {
        const auto& s = f.simulations[i];
        const auto name = "simulations[" + std::to_string(i) + "].";
        if (s.spike.size() != d)
            fail(name + "spike", std::to_string(d) + " values", std::to_string(s.spike.size()));
        if (s.soma_mv.size() != d)
            fail(name + "soma_mv", std::to_string(d) + " values", std::to_string(s.soma_mv.size()));
        if (s.event_channel.size() != s.event_time.size())
            fail(name + "event_channel", std::to_string(s.event_time.size()) + " values (as event_time)",
                 std::to_string(s.event_channel.size()));
        for (std::size_t k = 0; k < d; ++k) {
            if (s.spike[k] > 1)
                fail(name + "spike[" + std::to_string(k) + "]", "0 or 1", std::to_string(s.spike[k]));
            if (!std::isfinite(s.soma_mv[k]))
                fail(name + "soma_mv[" + std::to_string(k) + "]", "a finite voltage",
                     std::to_string(s.soma_mv[k]));
        }
        for (std::size_t k = 0; k < s.event_time.size(); ++k) {
            const auto tm = s.event_time[k], ch = s.event_channel[k];
            if (tm < 0 || tm >= f.duration_ms)
                fail(name + "event_time[" + std::to_string(k) + "]",
                     "a time in [0, " + std::to_string(f.duration_ms) + ")", std::to_string(tm));
            if (ch < 0 || ch >= f.num_channels())
                fail(name + "event_channel[" + std::to_string(k) + "]",
                     "a channel in [0, " + std::to_string(f.num_channels()) + ")", std::to_string(ch));
            if (k > 0 &&
                !(s.event_time[k - 1] < tm || (s.event_time[k - 1] == tm && s.event_channel[k - 1] < ch)))
                fail(name + "event_time[" + std::to_string(k) + "]",
                     "events sorted by (time, channel) without repeats",
                     "(" + std::to_string(tm) + ", " + std::to_string(ch) + ") after (" +
                         std::to_string(s.event_time[k - 1]) + ", " + std::to_string(s.event_channel[k - 1]) +
                         ")");
        }
    }
}

// I16 when every value fits (the published data: times < 6000, channels < 1278), else I32.
tensor index_tensor(std::string name, const std::vector<std::int32_t>& values) {
    const bool small = std::all_of(values.begin(), values.end(), [](std::int32_t x) {
        return x <= std::numeric_limits<std::int16_t>::max();
    });
    tensor t;
    t.name = std::move(name);
    t.shape = {static_cast<std::int64_t>(values.size())};
    if (small) {
        t.type = dtype::i16;
        t.data.resize(values.size() * 2);
        for (std::size_t i = 0; i < values.size(); ++i) {
            const auto x = static_cast<std::int16_t>(values[i]);
            std::memcpy(t.data.data() + 2 * i, &x, 2);
        }
    } else {
        t.type = dtype::i32;
        t.data.resize(values.size() * 4);
        if (!values.empty()) std::memcpy(t.data.data(), values.data(), t.data.size());
    }
    return t;
}

void write_cache(const std::string& path, const neuronio_file& f, const std::string& cache_key) {
    validate(f, path);
    const auto n_sim = f.simulations.size();
    const auto d = std::size_t(f.duration_ms);
    std::vector<std::int64_t> offset(n_sim + 1, 0);
    std::vector<std::int32_t> times, channels;
    std::vector<std::uint8_t> spike(n_sim * d);
    std::vector<float> soma(n_sim * d);
    for (std::size_t i = 0; i < n_sim; ++i) {
        const auto& s = f.simulations[i];
        times.insert(times.end(), s.event_time.begin(), s.event_time.end());
        channels.insert(channels.end(), s.event_channel.begin(), s.event_channel.end());
        offset[i + 1] = static_cast<std::int64_t>(times.size());
        std::copy(s.spike.begin(), s.spike.end(), spike.begin() + std::ptrdiff_t(i * d));
        std::copy(s.soma_mv.begin(), s.soma_mv.end(), soma.begin() + std::ptrdiff_t(i * d));
    }
    tensor_file tf;
    tf.source = path;
    tf.metadata["format"] = std::string(cache_format);
    tf.metadata["source"] = f.source;
    tf.metadata["num_segments"] = std::to_string(f.num_segments);
    tf.metadata["duration_ms"] = std::to_string(f.duration_ms);
    if (!cache_key.empty()) tf.metadata["cache_key"] = cache_key;
    const auto ns = static_cast<std::int64_t>(n_sim), di = static_cast<std::int64_t>(d);
    tf.tensors.push_back(make_tensor<std::int64_t>("event_offset", {ns + 1}, offset));
    tf.tensors.push_back(index_tensor("event_time", times));
    tf.tensors.push_back(index_tensor("event_channel", channels));
    tf.tensors.push_back(make_tensor<std::uint8_t>("spike", {ns, di}, spike));
    tf.tensors.push_back(make_tensor<float>("soma_mv", {ns, di}, soma));
    write_safetensors(path, tf);
}

int metadata_int(const tensor_file& tf, const std::string& path, const std::string& key) {
    const auto it = tf.metadata.find(key);
    if (it == tf.metadata.end())
        throw elm::error(path, "metadata." + key, "a positive integer", "no such key");
    int v = 0;
    const auto& s = it->second;
    const auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
    if (ec != std::errc{} || end != s.data() + s.size() || v < 1)
        throw elm::error(path, "metadata." + key, "a positive integer", "'" + s + "'");
    return v;
}

const tensor& cache_tensor(const tensor_file& tf, const std::string& path, const char* name,
                           std::initializer_list<dtype> types, const std::vector<std::int64_t>& shape) {
    const auto* t = tf.find(name);
    if (t == nullptr) throw elm::error(path, name, "a tensor", "none");
    if (std::find(types.begin(), types.end(), t->type) == types.end())
        throw elm::error(path, name, "another dtype", to_string(t->type));
    if (t->shape != shape) {
        auto str = [](const std::vector<std::int64_t>& s) {
            std::string r = "[";
            for (std::size_t i = 0; i < s.size(); ++i) r += (i ? ", " : "") + std::to_string(s[i]);
            return r + "]";
        };
        throw elm::error(path, name, "shape " + str(shape), str(t->shape));
    }
    return *t;
}

std::vector<std::int32_t> index_values(const tensor& t) {
    const auto n = static_cast<std::size_t>(t.shape[0]);
    std::vector<std::int32_t> out(n);
    for (std::size_t i = 0; i < n; ++i) {
        if (t.type == dtype::i16) {
            std::int16_t x = 0;
            std::memcpy(&x, t.data.data() + 2 * i, 2);
            out[i] = x;
        } else {
            std::memcpy(&out[i], t.data.data() + 4 * i, 4);
        }
    }
    return out;
}

neuronio_file read_cache(const std::string& path, std::string* cache_key) {
    const auto tf = read_safetensors(path);  // checks every length/offset against the bytes present
    const auto fmt = tf.metadata.find("format");
    if (fmt == tf.metadata.end() || fmt->second != cache_format)
        throw elm::error(path, "metadata.format", "'" + std::string(cache_format) + "'",
                         fmt == tf.metadata.end() ? "none" : "'" + fmt->second + "'");
    neuronio_file f;
    const auto src = tf.metadata.find("source");
    f.source = src != tf.metadata.end() && !src->second.empty() ? src->second : path;
    f.num_segments = metadata_int(tf, path, "num_segments");
    f.duration_ms = metadata_int(tf, path, "duration_ms");
    if (cache_key != nullptr) {
        const auto k = tf.metadata.find("cache_key");
        *cache_key = k == tf.metadata.end() ? std::string() : k->second;
    }
    const auto* off_t = tf.find("event_offset");
    if (off_t == nullptr || off_t->shape.size() != 1 || off_t->shape[0] < 1)
        throw elm::error(path, "event_offset", "an I64 tensor [n_sim + 1]",
                         off_t == nullptr ? "none" : "another shape");
    const auto n_sim = off_t->shape[0] - 1;
    const auto& off = cache_tensor(tf, path, "event_offset", {dtype::i64}, {n_sim + 1});
    const auto offsets = off.to<std::int64_t>();
    const auto n_events = offsets.back();
    for (std::size_t i = 0; i < offsets.size(); ++i)
        if ((i == 0 && offsets[i] != 0) || (i > 0 && offsets[i] < offsets[i - 1]))
            throw elm::error(path, "event_offset[" + std::to_string(i) + "]", "non-decreasing offsets from 0",
                             std::to_string(offsets[i]));
    const auto times =
        index_values(cache_tensor(tf, path, "event_time", {dtype::i16, dtype::i32}, {n_events}));
    const auto channels =
        index_values(cache_tensor(tf, path, "event_channel", {dtype::i16, dtype::i32}, {n_events}));
    const auto di = static_cast<std::int64_t>(f.duration_ms);
    const auto& spike_t = cache_tensor(tf, path, "spike", {dtype::u8, dtype::boolean}, {n_sim, di});
    const auto soma = cache_tensor(tf, path, "soma_mv", {dtype::f32}, {n_sim, di}).to<float>();
    const auto d = std::size_t(f.duration_ms);
    f.simulations.resize(std::size_t(n_sim));
    for (std::size_t i = 0; i < f.simulations.size(); ++i) {
        auto& s = f.simulations[i];
        const auto b = std::ptrdiff_t(offsets[i]), e = std::ptrdiff_t(offsets[i + 1]);
        s.event_time.assign(times.begin() + b, times.begin() + e);
        s.event_channel.assign(channels.begin() + b, channels.begin() + e);
        const auto* sp = reinterpret_cast<const std::uint8_t*>(spike_t.data.data()) + i * d;
        s.spike.assign(sp, sp + d);
        s.soma_mv.assign(soma.begin() + std::ptrdiff_t(i * d), soma.begin() + std::ptrdiff_t((i + 1) * d));
    }
    validate(f, path);
    return f;
}

bool name_matches(const std::string& name) {
    // Pickles only: the published files end in ".p"; generators write sidecars (e.g. sim__....json) and
    // caches beside them, which also match ELM's "*sim__*" glob and must not be read as pickles. Hidden
    // files are skipped, as Python's glob does: archives made on macOS carry an AppleDouble "._x.p" beside
    // each "x.p", which is no pickle.
    if (name.starts_with('.')) return false;
    std::string lower = name;  // any case: files copied from other systems may end in .P
    for (char& ch : lower) ch = static_cast<char>(std::tolower(static_cast<unsigned char>(ch)));
    return (lower.size() > 2 && lower.ends_with(".p")) || lower.ends_with(".pkl") ||
           lower.ends_with(".pickle");
}

}  // namespace

neuronio_file parse_neuronio_pickle(std::span<const std::byte> bytes, std::string_view source) {
    // Other formats a data folder may hold, named instead of failing as a pickle at byte 0.
    const std::string_view head(reinterpret_cast<const char*>(bytes.data()),
                                std::min<std::size_t>(bytes.size(), 8));
    for (const auto& [magic, kind] :
         {std::pair{std::string_view("\x93NUMPY"), "a .npy array"},
          {std::string_view("PK\x03\x04"), "a zip archive (e.g. a PyTorch .pt file)"},
          {std::string_view("\x89HDF\r\n"), "an HDF5 file"},
          {std::string_view("\x1f\x8b"), "a gzip file (decompress it first)"}})
        if (head.starts_with(magic))
            throw error(std::string(source), "(file)", "a NeuronIO simulation pickle (.p)", kind);
    const auto tree = detail::unpickle(bytes, source, neuronio_options());
    return interpret(tree);
}

neuronio_file read_neuronio_file(const std::string& path) {
    const mapped_file map(path);
    return parse_neuronio_pickle(map.bytes(), path);
}

void write_neuronio_cache(const std::string& path, const neuronio_file& file) { write_cache(path, file, ""); }

neuronio_file read_neuronio_cache(const std::string& path) { return read_cache(path, nullptr); }

neuronio_file load_neuronio(const std::string& path, const std::string& cache_dir) {
    if (cache_dir.empty()) return read_neuronio_file(path);
    struct stat sb {};
    if (::stat(path.c_str(), &sb) != 0) throw file_not_found_error(path);
    if (!S_ISREG(sb.st_mode)) throw elm::error(path, "path", "a regular file", "something else");
    const auto name = fs::path(path).filename().string();
    const auto mtime_ns = static_cast<std::int64_t>(sb.st_mtim.tv_sec) * 1000000000 +
                          static_cast<std::int64_t>(sb.st_mtim.tv_nsec);
    const auto key = name + "." + std::to_string(sb.st_size) + "." + std::to_string(mtime_ns);
    const auto cache = (fs::path(cache_dir) / (key + ".neuronio.safetensors")).string();
    std::error_code ec;
    if (fs::exists(cache, ec)) {
        std::string stored_key;
        neuronio_file f;
        try {
            f = read_cache(cache, &stored_key);
        } catch (const file_not_found_error&) {
            throw;
        } catch (const elm::error& e) {
            throw elm::error(e.file(), e.field(), e.expected(), e.got(),
                             "delete the cache file to rebuild it from " + path);
        }
        if (stored_key == key) {
            f.source = path;
            return f;
        }
    }
    auto f = read_neuronio_file(path);
    create_output_folder(cache_dir, "cache_dir");
    write_cache(cache, f, key);
    return f;
}

std::vector<std::string> list_neuronio_files(const std::string& dir_or_file) {
    std::error_code ec;
    const auto st = fs::status(dir_or_file, ec);
    if (ec || !fs::exists(st)) throw file_not_found_error(dir_or_file);
    if (fs::is_regular_file(st)) return {dir_or_file};
    if (!fs::is_directory(st)) throw elm::error(dir_or_file, "path", "a file or a folder", "something else");
    std::vector<std::string> out;
    for (fs::directory_iterator it(dir_or_file, ec), end; !ec && it != end; it.increment(ec)) {
        std::error_code e2;
        if (it->is_regular_file(e2) && name_matches(it->path().filename().string()))
            out.push_back(it->path().string());
    }
    if (ec) throw elm::error(dir_or_file, "path", "a readable folder", ec.message());
    if (out.empty())
        throw elm::error(dir_or_file, "path", "a folder with NeuronIO pickles (*.p, *.pkl, *.pickle)",
                         "none");
    std::sort(out.begin(), out.end());
    return out;
}

std::vector<std::string> list_neuronio_files(const std::vector<std::string>& paths) {
    std::vector<std::string> out;
    std::map<fs::path, std::string>
        seen;  // canonical path -> as given: a file counted twice skews every metric
    for (const auto& p : paths)
        for (auto& f : list_neuronio_files(p)) {
            std::error_code ec;
            auto canonical = fs::weakly_canonical(f, ec);
            if (ec) canonical = fs::absolute(f, ec).lexically_normal();
            const auto [it, fresh] = seen.emplace(canonical, f);
            if (!fresh)
                throw elm::error(f, "path", "each file once", "listed twice (as " + it->second + ")",
                                 "a file given both by itself and through its folder?");
            out.push_back(std::move(f));
        }
    return out;
}

}  // namespace elm
