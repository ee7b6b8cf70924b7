#pragma once
// Named tensors as they are stored on disk: safetensors files (our model format, golden cases, CLI
// input/output) and PyTorch state dicts (.pt zip archives, read with a restricted unpickler that never
// executes anything). docs/formats.md describes both.

#include <cstddef>
#include <cstdint>
#include <map>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace elm {

enum class dtype { f16, f32, f64, i8, i16, i32, i64, u8, boolean, bf16 };

const char* to_string(dtype t);  // safetensors spelling: "F32", "I64", "BOOL", ...
std::size_t dtype_size(dtype t);

struct tensor {
    std::string name;
    dtype type = dtype::f32;
    std::vector<std::int64_t> shape;
    std::vector<std::byte> data;  // little-endian, row-major, numel · dtype_size bytes

    std::int64_t numel() const;
    // Element values converted to T (any numeric dtype; f16 and bf16 decoded exactly).
    template <class T>
    std::vector<T> to() const;
};

template <class T>
tensor make_tensor(std::string name, std::vector<std::int64_t> shape, std::span<const T> values);

struct tensor_file {
    std::string source;  // file name, for error messages
    std::map<std::string, std::string> metadata;
    std::vector<tensor> tensors;

    const tensor* find(std::string_view name) const;
    // Throws elm::error naming source and the tensor if absent.
    const tensor& at(std::string_view name) const;
    // at(name) with a shape check: throws elm::error naming the expected and actual shapes.
    const tensor& at(std::string_view name, const std::vector<std::int64_t>& expected_shape) const;
};

// safetensors: 8-byte little-endian header length, JSON header, raw data. Every length, offset and
// dtype is checked against the bytes present; errors name the file and the field.
tensor_file read_safetensors(const std::string& path);
tensor_file parse_safetensors(std::span<const std::byte> bytes, std::string_view source);
std::vector<std::byte> serialize_safetensors(const tensor_file& file);
// Atomic: written to a temporary file in the same folder, then renamed.
void write_safetensors(const std::string& path, const tensor_file& file);

// A PyTorch state dict saved by torch.save (zip archive: data.pkl + data/<key> storages). Only the
// opcodes and globals a state dict needs are accepted (OrderedDict, _rebuild_tensor_v2,
// _rebuild_parameter, the typed storages); anything else is an elm::error naming the opcode or global.
tensor_file read_torch_state_dict(const std::string& path);

// Writes text (JSON, CSV reports) atomically: temporary file in the same folder, then rename.
void write_text_atomic(const std::string& path, std::string_view text);

// Creates an output folder (and its parents) if needed and checks that files can be written into it; an
// elm::error naming the folder and `field` (the option or config key it came from) otherwise, not a
// filesystem exception.
void create_output_folder(const std::string& path, const std::string& field = "output folder");

// Removes the temporary files (NAME.tmp.PID.N, NAME a .safetensors, .csv, .json or .npy file) that atomic
// writes of processes no longer running left in `folder` when they were killed between writing and renaming;
// another live process's are kept.
void remove_stale_temporaries(const std::string& folder);

// An exclusive lock on an output folder for the life of the object (flock on FOLDER/.lock, released by the
// kernel if the process dies): a second job writing into the same folder gets an elm::error naming the
// folder and `field` instead of interleaving its files with the first's. On a file system without locks
// (some network mounts) a warning, and no lock.
class folder_lock {
public:
    folder_lock(const std::string& folder, const std::string& field);
    ~folder_lock();
    int fd() const { return fd_; }  // -1 without a lock; a child process that inherits it shares the lock
    folder_lock(const folder_lock&) = delete;
    folder_lock& operator=(const folder_lock&) = delete;

private:
    int fd_ = -1;
};

// .npy (version 1-3, little-endian numeric dtypes, C order) read and atomic write.
tensor read_npy(const std::string& path);
void write_npy(const std::string& path, const tensor& t);

}  // namespace elm
