// PyTorch state dicts saved by torch.save (zip format, PyTorch >= 1.6): <prefix>/data.pkl is a pickle of
// an OrderedDict {name: tensor}; each tensor is _rebuild_tensor_v2(storage, offset, size, stride, ...)
// whose storage is a persistent id ('storage', torch.<Type>Storage, key, location, numel) with raw
// little-endian bytes in <prefix>/data/<key>. The pickle is read by the restricted unpickler (nothing is
// executed); the zip container by libzip. Location ('cpu', 'cuda:0') does not matter: we read bytes.

#include <elmneuron/error.hpp>
#include <elmneuron/tensor_file.hpp>

#include <zip.h>

#include <cstring>
#include <map>
#include <memory>

#include "io/io_detail.hpp"
#include "io/pickle.hpp"

namespace elm {
namespace detail {

namespace {

struct storage_type {
    const char* name;
    dtype type;
};
constexpr storage_type storage_types[] = {
    {"FloatStorage", dtype::f32},     {"DoubleStorage", dtype::f64}, {"HalfStorage", dtype::f16},
    {"LongStorage", dtype::i64},      {"IntStorage", dtype::i32},    {"ShortStorage", dtype::i16},
    {"CharStorage", dtype::i8},       {"ByteStorage", dtype::u8},    {"BoolStorage", dtype::boolean},
    {"BFloat16Storage", dtype::bf16},
};

// Entries larger than this are refused (a state dict of an ELM neuron is a few MB), and compressed
// entries may not expand more than deflate's maximum ratio: no zip bombs.
constexpr std::uint64_t max_entry_bytes = std::uint64_t(2) << 30;
constexpr int max_rank = 16;

struct zip_closer {
    void operator()(zip_t* z) const { zip_discard(z); }
};
struct zip_file_closer {
    void operator()(zip_file_t* f) const { zip_fclose(f); }
};

class archive {
public:
    archive(std::span<const std::byte> bytes, std::string_view source) : source_(source) {
        zip_error_t err;
        zip_error_init(&err);
        zip_source_t* src = zip_source_buffer_create(bytes.data(), bytes.size(), 0, &err);
        if (src == nullptr) fail_zip("zip archive", &err, true);
        zip_.reset(zip_open_from_source(src, ZIP_RDONLY | ZIP_CHECKCONS, &err));
        if (!zip_) {
            zip_source_free(src);
            fail_zip("zip archive", &err, true);
        }
        zip_error_fini(&err);
        const auto n = zip_get_num_entries(zip_.get(), 0);
        for (zip_int64_t i = 0; i < n; ++i) {
            const char* name = zip_get_name(zip_.get(), static_cast<zip_uint64_t>(i), ZIP_FL_ENC_RAW);
            if (name != nullptr) names_.emplace(name, static_cast<zip_uint64_t>(i));
        }
    }

    const std::map<std::string, zip_uint64_t>& names() const { return names_; }

    std::vector<std::byte> read(const std::string& name) {
        const auto it = names_.find(name);
        if (it == names_.end()) throw elm::error(source_, name, "an archive entry", "missing");
        zip_stat_t st;
        zip_stat_init(&st);
        if (zip_stat_index(zip_.get(), it->second, 0, &st) != 0 || (st.valid & ZIP_STAT_SIZE) == 0)
            fail_zip(name, zip_get_error(zip_.get()));
        const bool stored = (st.valid & ZIP_STAT_COMP_METHOD) != 0 && st.comp_method == ZIP_CM_STORE;
        const std::uint64_t ratio_cap = (st.valid & ZIP_STAT_COMP_SIZE) ? st.comp_size * 1100 + 4096 : 0;
        if (st.size > max_entry_bytes || (!stored && st.size > ratio_cap))
            throw elm::error(source_, name, "an entry of plausible size", std::to_string(st.size) + " bytes");
        std::unique_ptr<zip_file_t, zip_file_closer> f(zip_fopen_index(zip_.get(), it->second, 0));
        if (!f) fail_zip(name, zip_get_error(zip_.get()));
        std::vector<std::byte> out(static_cast<std::size_t>(st.size));
        std::size_t got = 0;
        while (got < out.size()) {
            const auto r = zip_fread(f.get(), out.data() + got, out.size() - got);
            if (r < 0) fail_zip(name, zip_file_get_error(f.get()));
            if (r == 0) break;
            got += static_cast<std::size_t>(r);
        }
        if (got != out.size())
            throw elm::error(source_, name, std::to_string(out.size()) + " bytes",
                             std::to_string(got) + " bytes");
        char extra = 0;  // also makes libzip verify the CRC at end of entry
        if (zip_fread(f.get(), &extra, 1) != 0) fail_zip(name, zip_file_get_error(f.get()));
        return out;
    }

private:
    // `owned`: a local zip_error_t whose message buffer we must free (the others belong to libzip objects).
    [[noreturn]] void fail_zip(const std::string& field, zip_error_t* err, bool owned = false) const {
        const std::string msg = zip_error_strerror(err);
        if (owned) zip_error_fini(err);
        throw elm::error(
            source_, field, "a readable PyTorch zip archive", msg,
            "torch.save files are zip archives (PyTorch >= 1.6); re-save legacy files with a recent torch");
    }

    std::string source_;
    std::unique_ptr<zip_t, zip_closer> zip_;
    std::map<std::string, zip_uint64_t> names_;
};

struct storage {
    dtype type;
    std::int64_t numel;
    std::vector<std::byte> bytes;
};

class state_dict_reader {
public:
    state_dict_reader(const storage_reader& read, const pickle_tree& tree) : read_(read), t_(tree) {}

    tensor_file run() {
        tensor_file out;
        out.source = t_.source;
        // Module.state_dict() carries a _metadata attribute (per-module versions); pickled, it is a BUILD
        // of the OrderedDict with {'_metadata': ...}. The versions do not change tensor contents.
        auto root = t_.root;
        if (t_.kind(root) == pickle_kind::build && t_.kind(t_.children(root)[0]) == pickle_kind::dict)
            root = t_.children(root)[0];
        const auto n = t_.dict_size(root, "state dict (data.pkl root)");
        for (std::size_t i = 0; i < n; ++i) {
            const auto [k, v] = t_.dict_item(root, i);
            tensor x;
            x.name = std::string(t_.as_string(k, "state dict key"));
            const bool nested_dict =  // {"model_state_dict": ..., "optimizer_state_dict": ...}
                t_.kind(v) == pickle_kind::dict ||
                (t_.kind(v) == pickle_kind::build && t_.kind(t_.children(v)[0]) == pickle_kind::dict);
            if (nested_dict)
                throw elm::error(
                    t_.source, x.name, "a tensor (a file holding a model's state dict)",
                    "a dict: a training checkpoint?",
                    "save the model's state dict alone: torch.save(checkpoint['" + x.name + "'], PATH)");
            for (const auto& prev : out.tensors)
                if (prev.name == x.name) t_.fail(x.name, "unique state dict keys", "duplicate key");
            read_tensor(v, x, 0);
            out.tensors.push_back(std::move(x));
        }
        return out;
    }

private:
    void read_tensor(pickle_ref v, tensor& x, int depth) {
        const std::string& field = x.name;
        if (t_.kind(v) != pickle_kind::reduce)
            t_.fail(field, "a tensor (_rebuild_tensor_v2)", t_.describe(v));
        const auto c = t_.children(v);
        const auto args = t_.as_tuple(c[1], field);
        if (depth == 0 && (t_.is_global(c[0], "torch._utils", "_rebuild_parameter") ||
                           t_.is_global(c[0], "torch._utils", "_rebuild_parameter_with_state"))) {
            if (args.empty()) t_.fail(field, "_rebuild_parameter(data, ...)", "no arguments");
            return read_tensor(args[0], x, 1);  // requires_grad, hooks and state do not matter here
        }
        if (!t_.is_global(c[0], "torch._utils", "_rebuild_tensor_v2"))
            t_.fail(field, "_rebuild_tensor_v2 or _rebuild_parameter", t_.describe(c[0]));
        if (args.size() < 4 || args.size() > 7)
            t_.fail(field, "_rebuild_tensor_v2(storage, offset, size, stride, ...)", t_.describe(c[1]));
        const storage& s = read_storage(args[0], field);
        const auto offset = t_.as_int(args[1], field + " storage_offset");
        const auto size = t_.as_tuple(args[2], field + " size");
        const auto stride = t_.as_tuple(args[3], field + " stride");
        if (size.size() != stride.size() || size.size() > max_rank)
            t_.fail(field, "size and stride of equal rank <= 16",
                    t_.describe(args[2]) + " / " + t_.describe(args[3]));
        if (offset < 0 || offset > s.numel)
            t_.fail(field, "storage_offset in [0, " + std::to_string(s.numel) + "]", std::to_string(offset));

        // Every element must lie inside the storage. Views may overlap (an expanded tensor: stride 0), so
        // the allocation is bounded by a size no model parameter reaches, not by the storage.
        const auto rank = size.size();
        std::vector<std::int64_t> dims(rank), strides(rank);
        bool empty = false;
        for (std::size_t d = 0; d < rank; ++d) {
            dims[d] = t_.as_int(size[d], field + " size");
            strides[d] = t_.as_int(stride[d], field + " stride");
            if (dims[d] < 0 || strides[d] < 0)
                t_.fail(field, "non-negative sizes and strides",
                        t_.describe(args[2]) + " / " + t_.describe(args[3]));
            empty = empty || dims[d] == 0;
        }
        constexpr std::int64_t max_elements = std::int64_t(1) << 28;
        std::int64_t numel = empty ? 0 : 1;
        for (std::size_t d = 0; d < rank && numel > 0; ++d)
            numel = dims[d] > max_elements || numel * dims[d] > max_elements ? max_elements + 1
                                                                             : numel * dims[d];  // saturates
        if (numel > max_elements)
            t_.fail(field, "at most 2^28 elements (a model parameter)", t_.describe(args[2]));
        std::int64_t last = offset;
        for (std::size_t d = 0; d < rank && numel > 0; ++d) {
            if (dims[d] > 1 && strides[d] >= s.numel)
                last = s.numel;  // also avoids overflow below
            else
                last += (dims[d] - 1) * strides[d];
            if (last >= s.numel)
                t_.fail(field, "elements inside the storage of " + std::to_string(s.numel),
                        "offset " + std::to_string(offset) + ", size " + t_.describe(args[2]) + ", stride " +
                            t_.describe(args[3]));
        }

        x.type = s.type;
        x.shape = dims;
        const auto esz = dtype_size(s.type);
        x.data.resize(static_cast<std::size_t>(numel) * esz);
        if (numel == 0) return;
        // Gather in row-major order; a contiguous tensor is one run of the innermost loop.
        std::vector<std::int64_t> idx(rank, 0);
        for (std::int64_t i = 0; i < numel; ++i) {
            std::int64_t src = offset;
            for (std::size_t d = 0; d < rank; ++d) src += idx[d] * strides[d];
            std::memcpy(x.data.data() + static_cast<std::size_t>(i) * esz,
                        s.bytes.data() + static_cast<std::size_t>(src) * esz, esz);
            for (std::size_t d = rank; d-- > 0;) {
                if (++idx[d] < dims[d]) break;
                idx[d] = 0;
            }
        }
    }

    const storage& read_storage(pickle_ref v, const std::string& field) {
        if (t_.kind(v) != pickle_kind::persistent_id)
            t_.fail(field, "a storage (persistent id)", t_.describe(v));
        const auto pid = t_.as_tuple(t_.children(v)[0], field + " persistent id");
        if (pid.size() != 5 || t_.kind(pid[0]) != pickle_kind::string ||
            t_.as_string(pid[0], field) != "storage")
            t_.fail(field, "('storage', type, key, location, numel)", t_.describe(t_.children(v)[0]));
        const auto g = t_.as_global(pid[1], field + " storage type");
        const storage_type* st = nullptr;
        for (const auto& s : storage_types)
            if (g.module == "torch" && g.name == s.name) st = &s;
        if (st == nullptr)
            t_.fail(field, "a torch.<Type>Storage", std::string(g.module) + "." + std::string(g.name));
        const std::string key(t_.as_string(pid[2], field + " storage key"));
        const auto numel = t_.as_int(pid[4], field + " storage numel");
        const auto it = storages_.find(key);
        if (it != storages_.end()) {
            if (it->second.type != st->type || it->second.numel != numel)
                t_.fail(field, "storage " + key + " with one type and size", "conflicting uses");
            return it->second;
        }
        if (numel < 0 || static_cast<std::uint64_t>(numel) > max_entry_bytes)
            t_.fail(field, "a storage numel in [0, 2^31]", std::to_string(numel));
        storage s{st->type, numel, read_(key, static_cast<std::uint64_t>(numel) * dtype_size(st->type))};
        if (s.bytes.size() / dtype_size(s.type) != static_cast<std::uint64_t>(numel) ||
            s.bytes.size() % dtype_size(s.type) != 0)
            t_.fail(field, "storage " + key + " of " + std::to_string(numel) + " x " + to_string(s.type),
                    std::to_string(s.bytes.size()) + " bytes");
        return storages_.emplace(key, std::move(s)).first->second;
    }

    const storage_reader& read_;
    const pickle_tree& t_;
    std::map<std::string, storage> storages_;
};

unpickle_options torch_options() {
    unpickle_options o;
    o.allowed_globals = {{"collections", "OrderedDict"},
                         {"torch._utils", "_rebuild_tensor_v2"},
                         {"torch._utils", "_rebuild_parameter"},
                         {"torch._utils", "_rebuild_parameter_with_state"}};
    for (const auto& s : storage_types) o.allowed_globals.emplace_back("torch", s.name);
    return o;
}

}  // namespace

tensor_file parse_torch_state_dict(std::span<const std::byte> zip_bytes, std::string_view source) {
    archive zip(zip_bytes, source);
    // The pickle sits at <prefix>/data.pkl, prefix = the archive name torch.save chose (one folder).
    std::string prefix;
    int found = 0;
    for (const auto& [name, index] : zip.names()) {
        const auto slash = name.find('/');
        if (slash != std::string::npos && name.substr(slash + 1) == "data.pkl") {
            prefix = name.substr(0, slash + 1);
            ++found;
        }
    }
    if (found != 1)
        throw elm::error(std::string(source), "data.pkl", "exactly one <archive>/data.pkl entry",
                         std::to_string(found) + " entries", "is this a torch.save file?");
    const auto byteorder = zip.names().find(prefix + "byteorder");
    if (byteorder != zip.names().end()) {
        const auto b = zip.read(byteorder->first);
        const std::string order(reinterpret_cast<const char*>(b.data()), b.size());
        if (order != "little") throw elm::error(std::string(source), "byteorder", "little", order);
    }
    const auto pkl = zip.read(prefix + "data.pkl");
    auto out = torch_state_dict_from_pickle(
        pkl, std::string(source) + ":" + prefix + "data.pkl",
        [&](const std::string& key, std::uint64_t) { return zip.read(prefix + "data/" + key); });
    out.source = std::string(source);
    return out;
}

tensor_file torch_state_dict_from_pickle(std::span<const std::byte> pkl, std::string_view source,
                                         const storage_reader& read) {
    const auto options = torch_options();
    const auto tree = unpickle(pkl, source, options);
    return state_dict_reader(read, tree).run();
}

}  // namespace detail

tensor_file read_torch_state_dict(const std::string& path) {
    const auto bytes = detail::read_file(path);
    return detail::parse_torch_state_dict(bytes, path);
}

}  // namespace elm
