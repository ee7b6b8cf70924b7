#pragma once
// Private helpers shared by the readers and writers in src/io: whole-file reads, atomic writes, and the
// in-memory entry points of every parser (used by the file readers, the unit tests and tests/fuzz).

#include <elmneuron/tensor_file.hpp>

#include <nlohmann/json.hpp>

#include <cstddef>
#include <cstdint>
#include <functional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace elm::detail {

// Whole file; throws elm::file_not_found_error if it does not exist, elm::error if it cannot be read.
std::vector<std::byte> read_file(const std::string& path);

// Writes to a temporary file in the same folder, fsyncs it, then renames it over `path`, so readers
// never see a partial file. Throws elm::error naming `path` on failure (the temporary is removed). Once the
// file is in place, the temporaries of `path` that killed writers (processes no longer running) left beside
// it are removed.
void write_file_atomic(const std::string& path, std::span<const std::byte> bytes);

// The temporaries (NAME.tmp.PID.N) of processes no longer running in `folder`: of the file `target` (a file
// name) if given, else of every .safetensors, .csv, .json or .npy file.
void remove_stale_temporaries(const std::string& folder, std::string_view target);

// PyTorch zip archive (torch.save) held in memory.
tensor_file parse_torch_state_dict(std::span<const std::byte> zip_bytes, std::string_view source);
// The pickle part alone (data.pkl): `read(key, expected_bytes)` returns the bytes of storage `key`
// (expected_bytes = numel · element size from the pickle; the result is checked against it).
using storage_reader =
    std::function<std::vector<std::byte>(const std::string& key, std::uint64_t expected_bytes)>;
tensor_file torch_state_dict_from_pickle(std::span<const std::byte> pkl, std::string_view source,
                                         const storage_reader& read);

// JSON text parsed as JSON parsers do, but refusing what they silently accept: a key twice in one object
// (they keep one of the values) and nesting deeper than max_depth. Errors name `source` and `field`.
inline constexpr std::size_t max_config_depth = 16;  // config files (model, run) nest 3 deep
nlohmann::json parse_json_strict(std::string_view text, std::string_view source, std::string_view field,
                                 std::size_t max_depth);

// .npy held in memory.
tensor parse_npy(std::span<const std::byte> bytes, std::string_view source);
std::vector<std::byte> serialize_npy(const tensor& t, std::string_view source);

// Product of the dimensions; false if one is negative or the product overflows int64.
bool checked_numel(const std::vector<std::int64_t>& shape, std::int64_t& numel);

// IEEE half -> float (exact: every half is a float).
float half_to_float(std::uint16_t h);

}  // namespace elm::detail
