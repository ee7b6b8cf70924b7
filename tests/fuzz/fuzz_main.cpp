// Mutation fuzzing of every reader (safetensors, .pt zip archives, .npy, pickles) without libFuzzer:
// seed files are mutated with a fixed-seed generator (bit flips, interesting bytes and integers,
// truncation, insertion, deletion, chunk duplication) and fed to the in-memory parsers. The property is
// the one safetensors fuzzes for: a parser returns or throws elm::error, nothing else; crashes and
// out-of-bounds reads are caught by building with ELM_SANITIZE=ON (ASan + UBSan). Accepted inputs must
// also round-trip (safetensors, npy) through our writers.
//
//   elm_fuzz --iterations N --seed-dir DIR [--golden DIR] [--models DIR] [--rng-seed S]
//
// Seeds: *.safetensors, *.pt, *.npy, *.pkl in --seed-dir (tests/fuzz/corpus: small files written by
// Python: a state-dict data.pkl from an official model, a Python-2 NeuronIO-like pickle, protocol-4
// values, a whole tiny NeuronIO file at protocol 5 (neuronio_p5.pkl: numpy arrays as _frombuffer, an
// output spike at 0.25 ms, input times as a list and as an int32 array), tiny .npy/.pt/.safetensors
// files), golden *.safetensors and official *.pt files up to 128 KiB.

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <random>
#include <string>
#include <vector>

#include <elmneuron/error.hpp>
#include <elmneuron/neuronio.hpp>
#include <elmneuron/tensor_file.hpp>

#include "io/io_detail.hpp"
#include "io/pickle.hpp"

namespace {

namespace fs = std::filesystem;

enum class kind { safetensors, torch, npy, pickle };

struct seed {
    std::string name;
    kind type;
    std::vector<std::byte> bytes;
};

constexpr std::size_t max_seed_bytes = 128 * 1024;
constexpr std::size_t max_input_bytes = 256 * 1024;

bool kind_of(const fs::path& p, kind& k) {
    const auto e = p.extension();
    if (e == ".safetensors")
        k = kind::safetensors;
    else if (e == ".pt")
        k = kind::torch;
    else if (e == ".npy")
        k = kind::npy;
    else if (e == ".pkl" || e == ".p")
        k = kind::pickle;
    else
        return false;
    return true;
}

void add_seeds(const fs::path& dir, bool recursive, int max_files, std::vector<seed>& out) {
    if (dir.empty() || !fs::is_directory(dir)) return;
    std::vector<fs::path> files;
    if (recursive) {
        for (const auto& e : fs::recursive_directory_iterator(dir))
            if (e.is_regular_file()) files.push_back(e.path());
    } else {
        for (const auto& e : fs::directory_iterator(dir))
            if (e.is_regular_file()) files.push_back(e.path());
    }
    std::sort(files.begin(), files.end());  // deterministic order
    int taken = 0;
    for (const auto& f : files) {
        kind k;
        if (taken >= max_files || !kind_of(f, k) || fs::file_size(f) > max_seed_bytes) continue;
        out.push_back({f.string(), k, elm::detail::read_file(f.string())});
        ++taken;
    }
}

// Accepting parses also check that what we read, we can write and read back identically.
void check_same(const elm::tensor& a, const elm::tensor& b, const char* what) {
    if (a.type != b.type || a.shape != b.shape || a.data != b.data)
        throw std::logic_error(std::string(what) + ": round trip changed tensor " + a.name);
}

// Returns true if accepted; throws whatever the parser throws.
bool run_one(kind k, std::span<const std::byte> b) {
    switch (k) {
        case kind::safetensors: {
            const auto f = elm::parse_safetensors(b, "fuzz.safetensors");
            for (const auto& t : f.tensors) {
                if (t.type != elm::dtype::boolean) (void)t.to<double>();
            }
            const auto g = elm::parse_safetensors(elm::serialize_safetensors(f), "again");
            if (g.tensors.size() != f.tensors.size() || g.metadata != f.metadata)
                throw std::logic_error("safetensors round trip changed the file");
            for (const auto& t : f.tensors) check_same(t, g.at(t.name), "safetensors");
            return true;
        }
        case kind::torch: {
            const auto f = elm::detail::parse_torch_state_dict(b, "fuzz.pt");
            for (const auto& t : f.tensors)
                if (t.data.size() != static_cast<std::size_t>(t.numel()) * elm::dtype_size(t.type))
                    throw std::logic_error("torch tensor with inconsistent size: " + t.name);
            return true;
        }
        case kind::npy: {
            const auto t = elm::detail::parse_npy(b, "fuzz.npy");
            check_same(t, elm::detail::parse_npy(elm::detail::serialize_npy(t, "again"), "again"), "npy");
            return true;
        }
        case kind::pickle: {
            // Generic tree (NeuronIO globals) plus the state-dict interpretation with zero-filled storages.
            elm::detail::unpickle_options o;
            o.allowed_globals = {{"numpy.core.multiarray", "_reconstruct"},
                                 {"numpy", "ndarray"},
                                 {"numpy", "dtype"},
                                 {"numpy.core.multiarray", "scalar"},
                                 {"numpy.core.numeric", "_frombuffer"},
                                 {"collections", "OrderedDict"},
                                 {"torch._utils", "_rebuild_tensor_v2"},
                                 {"torch._utils", "_rebuild_parameter"},
                                 {"torch", "FloatStorage"},
                                 {"torch", "LongStorage"},
                                 {"torch", "BoolStorage"}};
            bool accepted = false;
            try {
                const auto t = elm::detail::unpickle(b, "fuzz.pkl", o);
                (void)t.describe(t.root, 4);
                std::size_t children = 0;
                for (std::size_t i = 0; i < t.nodes.size(); ++i)
                    children += t.children(static_cast<elm::detail::pickle_ref>(i)).size();
                (void)children;
                accepted = true;
            } catch (const elm::error&) {
            }
            const auto zeros = [](const std::string&, std::uint64_t n) {
                if (n > (1u << 20)) throw elm::error("fuzz", "storage", "<= 1 MiB", std::to_string(n));
                return std::vector<std::byte>(static_cast<std::size_t>(n));
            };
            try {
                (void)elm::detail::torch_state_dict_from_pickle(b, "fuzz.pkl", zeros);
            } catch (const elm::error&) {  // most pickles are not state dicts
            }
            // The NeuronIO dataset reader's interpretation of the same bytes.
            try {
                (void)elm::parse_neuronio_pickle(b, "fuzz.p");
            } catch (const elm::error&) {  // most pickles are not NeuronIO files
            }
            return accepted;
        }
    }
    return false;
}

const std::uint8_t interesting_bytes[] = {0x00, 0x01, 0x7f, 0x80, 0xff, '(',  ')',  '.',  'q', 'h',
                                          'R',  'b',  'u',  't',  'X',  'J',  'K',  'M',  ']', '}',
                                          'e',  's',  'N',  0x85, 0x86, 0x8a, 0x93, 0x95, '{', '}',
                                          '[',  ']',  '"',  ',',  ':',  '0',  '9',  '-',  ' '};
const std::uint64_t interesting_ints[] = {0,
                                          1,
                                          7,
                                          8,
                                          0x7f,
                                          0xff,
                                          0xffff,
                                          0x7fffffff,
                                          0xffffffff,
                                          0x80000000,
                                          0xffffffffffffffffull,
                                          0x7fffffffffffffffull,
                                          100u << 20};

std::vector<std::byte> mutate(const std::vector<std::byte>& in, std::mt19937_64& rng) {
    auto b = in;
    const auto pick = [&](std::size_t n) {
        return n == 0 ? std::size_t(0) : static_cast<std::size_t>(rng() % n);
    };
    const int rounds = 1 + static_cast<int>(rng() % 6);
    for (int r = 0; r < rounds; ++r) {
        switch (rng() % 8) {
            case 0:  // bit flip
                if (!b.empty()) b[pick(b.size())] ^= std::byte(1u << (rng() % 8));
                break;
            case 1:  // random byte
                if (!b.empty()) b[pick(b.size())] = std::byte(rng() & 0xff);
                break;
            case 2:  // interesting byte (opcodes, JSON punctuation, limits)
                if (!b.empty())
                    b[pick(b.size())] = std::byte(interesting_bytes[pick(std::size(interesting_bytes))]);
                break;
            case 3: {  // interesting little-endian integer of 1, 2, 4 or 8 bytes (lengths, offsets)
                const std::size_t w = std::size_t(1) << (rng() % 4);
                if (b.size() < w) break;
                const auto v = interesting_ints[pick(std::size(interesting_ints))];
                const auto at = pick(b.size() - w + 1);
                for (std::size_t i = 0; i < w; ++i) b[at + i] = std::byte((v >> (8 * i)) & 0xff);
                break;
            }
            case 4:  // truncate
                b.resize(pick(b.size() + 1));
                break;
            case 5: {  // insert random bytes
                const auto at = pick(b.size() + 1);
                const auto n = 1 + pick(16);
                std::vector<std::byte> ins(n);
                for (auto& x : ins) x = std::byte(rng() & 0xff);
                b.insert(b.begin() + static_cast<std::ptrdiff_t>(at), ins.begin(), ins.end());
                break;
            }
            case 6: {  // delete a range
                if (b.empty()) break;
                const auto at = pick(b.size());
                const auto n = 1 + pick(std::min<std::size_t>(64, b.size() - at));
                b.erase(b.begin() + static_cast<std::ptrdiff_t>(at),
                        b.begin() + static_cast<std::ptrdiff_t>(std::min(b.size(), at + n)));
                break;
            }
            default: {  // duplicate a chunk elsewhere
                if (b.empty()) break;
                const auto from = pick(b.size());
                const auto n = 1 + pick(std::min<std::size_t>(64, b.size() - from));
                const std::vector<std::byte> chunk(b.begin() + static_cast<std::ptrdiff_t>(from),
                                                   b.begin() + static_cast<std::ptrdiff_t>(from + n));
                const auto at = pick(b.size() + 1);
                b.insert(b.begin() + static_cast<std::ptrdiff_t>(at), chunk.begin(), chunk.end());
                break;
            }
        }
    }
    if (b.size() > max_input_bytes) b.resize(max_input_bytes);
    return b;
}

}  // namespace

int main(int argc, char** argv) {
    long iterations = 1000;
    std::uint64_t rng_seed = 20240601;
    std::string seed_dir, golden, models;
    for (int i = 1; i < argc; ++i) {
        const std::string a = argv[i];
        const auto value = [&]() -> std::string {
            if (i + 1 >= argc) {
                std::cerr << "elm_fuzz: " << a << " needs a value\n";
                std::exit(2);
            }
            return argv[++i];
        };
        if (a == "--iterations")
            iterations = std::stol(value());
        else if (a == "--seed-dir")
            seed_dir = value();
        else if (a == "--golden")
            golden = value();
        else if (a == "--models")
            models = value();
        else if (a == "--rng-seed")
            rng_seed = std::stoull(value());
        else {
            std::cerr << "usage: elm_fuzz --iterations N --seed-dir DIR [--golden DIR] [--models DIR] "
                         "[--rng-seed S]\n";
            return 2;
        }
    }
    std::vector<seed> seeds;
    add_seeds(seed_dir, false, 1000, seeds);
    add_seeds(golden, false, 1000, seeds);
    add_seeds(models, true, 2, seeds);  // official .pt files are ~80 KiB+: two are plenty
    if (seeds.empty()) {
        std::cerr << "elm_fuzz: no seed files found\n";
        return 1;
    }
    // Every seed must be accepted unmutated: the corpus and the parsers agree.
    int failures = 0;
    for (const auto& s : seeds) {
        try {
            if (!run_one(s.type, s.bytes) && s.type != kind::pickle) throw std::logic_error("not accepted");
        } catch (const std::exception& e) {
            std::cerr << "elm_fuzz: seed " << s.name << " rejected: " << e.what() << "\n";
            ++failures;
        }
    }

    const auto start = std::chrono::steady_clock::now();
    std::mt19937_64 rng(rng_seed);
    long accepted = 0, rejected = 0;
    for (long it = 0; it < iterations; ++it) {
        const auto& s = seeds[static_cast<std::size_t>(it) % seeds.size()];
        const auto input = mutate(s.bytes, rng);
        try {
            if (run_one(s.type, input))
                ++accepted;
            else
                ++rejected;
        } catch (const elm::error&) {
            ++rejected;
        } catch (const std::exception& e) {
            ++failures;
            const auto path = fs::temp_directory_path() / ("elm_fuzz_failure_" + std::to_string(it) + ".bin");
            std::ofstream(path, std::ios::binary)
                .write(reinterpret_cast<const char*>(input.data()),
                       static_cast<std::streamsize>(input.size()));
            std::cerr << "elm_fuzz: iteration " << it << " (seed " << s.name << "): " << e.what() << " -> "
                      << path << "\n";
        } catch (...) {
            ++failures;
            std::cerr << "elm_fuzz: iteration " << it << " (seed " << s.name << "): unknown exception\n";
        }
    }
    const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    std::printf(
        "elm_fuzz: %ld iterations over %zu seeds in %.1f s: %ld accepted, %ld rejected with elm::error, %d "
        "failures\n",
        iterations, seeds.size(), secs, accepted, rejected, failures);
    return failures == 0 ? 0 : 1;
}
