// Whole-model files (docs/formats.md). Our format is safetensors with every published state-dict tensor
// under its published name (F32 for float models, F64 for double; routing as I64 indices and a BOOL
// mask, as PyTorch stores them; without routing the two as the published empty placeholders) and metadata
// {format, model_version, config}; safetensors.torch.load_file reads it. The official pretrained models are a
// folder with model_config.json and one .pt state dict (all v1-class: published README). Loading is strict: a
// missing, misshapen, non-finite (NaN; ±inf except where model::validate_parameters allows it) or unknown
// tensor is an error naming the file and the tensor, never a silent default.

#include <elmneuron/config.hpp>
#include <elmneuron/error.hpp>
#include <elmneuron/model.hpp>
#include <elmneuron/model_file.hpp>
#include <elmneuron/tensor_file.hpp>

#include <filesystem>
#include <set>

#include "io/io_detail.hpp"

namespace elm {

namespace {

namespace fs = std::filesystem;

constexpr const char* routing_index_name = "input_to_synapse_indices";
constexpr const char* routing_mask_name = "valid_indices_mask";

bool is_float(dtype t) { return t == dtype::f16 || t == dtype::bf16 || t == dtype::f32 || t == dtype::f64; }
bool is_integer(dtype t) {
    return t == dtype::i8 || t == dtype::i16 || t == dtype::i32 || t == dtype::i64 || t == dtype::u8;
}

std::string read_text(const std::string& path) {
    const auto bytes = detail::read_file(path);
    return {reinterpret_cast<const char*>(bytes.data()), bytes.size()};
}

// A bare state dict (.pt, .pth, or safetensors without our metadata) takes its config from the
// model_config.json beside it, as the official zoo folders have it (v1 models: published README).
fs::path config_beside(const fs::path& state_dict) { return state_dict.parent_path() / "model_config.json"; }
template <class T>
model<T> with_config_beside(const fs::path& state_dict, const tensor_file& sd) {
    const auto path = config_beside(state_dict);
    return model_from_state_dict<T>(
        parse_model_config(read_text(path.string()), path.string(), model_version::v1), sd);
}

bool has_extension(const fs::path& p, const char* ext) { return p.extension() == ext; }
// torch.save files: .pt, or .pth (the other common name, the same format).
bool is_torch_file(const fs::path& p) { return has_extension(p, ".pt") || has_extension(p, ".pth"); }

// tensor::to<U>() does not know the file; its errors (bad BOOL bytes, non-integral indices) get it here.
template <class U>
std::vector<U> values_of(const tensor_file& sd, const tensor& t) {
    try {
        return t.to<U>();
    } catch (const elm::error& e) {
        throw elm::error(sd.source, t.name, e.expected(), e.got(), e.hint());
    }
}

}  // namespace

template <class T>
model<T> model_from_state_dict(const model_config& config, const tensor_file& sd) {
    config.validate(sd.source);
    model<T> m(config, 0);  // the seed does not matter: every parameter is overwritten below
    std::set<std::string> used;
    for (const auto& p : m.layout()) {
        const tensor& t = sd.at(p.name, p.shape);
        if (!is_float(t.type))
            throw elm::error(sd.source, p.name, "a floating-point tensor (F16/BF16/F32/F64)",
                             to_string(t.type));
        const auto values = values_of<T>(sd, t);
        // Finiteness is checked by model::validate_parameters below (it allows the published ±inf τ_m
        // logits).
        const auto dst = m.parameter(p.name);
        std::copy(values.begin(), values.end(), dst.begin());
        used.insert(p.name);
    }
    if (config.input_to_synapse_routing != routing::none) {
        const std::vector<std::int64_t> shape{config.num_synapse()};
        const tensor& index = sd.at(routing_index_name, shape);
        const tensor& mask = sd.at(routing_mask_name, shape);
        if (!is_integer(index.type))
            throw elm::error(sd.source, routing_index_name, "an integer tensor", to_string(index.type));
        // Published files store the mask as BOOL, I64 or F32; set_routing checks the values.
        m.set_routing(values_of<std::int64_t>(sd, index), values_of<T>(sd, mask), sd.source);
        used.insert(routing_index_name);
        used.insert(routing_mask_name);
    } else {
        // Without routing the published constructor still registers both, as nn.Parameter(None): empty
        // tensors, in every state dict it saves.
        for (const char* name : {routing_index_name, routing_mask_name})
            if (const tensor* t = sd.find(name)) {
                if (t->numel() != 0)
                    throw elm::error(sd.source, name,
                                     "an empty tensor (the published placeholder of a model without routing)",
                                     std::to_string(t->numel()) + " elements",
                                     "does the config's input_to_synapse_routing match the state dict?");
                used.insert(name);
            }
    }
    for (const auto& t : sd.tensors)
        if (!used.contains(t.name))
            throw elm::error(sd.source, t.name,
                             "only the tensors of a " + std::string(to_string(config.version)) +
                                 " model with routing " + to_string(config.input_to_synapse_routing),
                             "an unknown tensor", "does the config match the state dict?");
    m.validate_parameters(sd.source);
    return m;
}

template <class T>
tensor_file state_dict(const model<T>& m) {
    tensor_file f;
    f.source = "model";
    for (const auto& p : m.layout()) {
        const auto values = m.parameter(p.name);
        f.tensors.push_back(
            make_tensor<T>(p.name, p.shape, std::span<const T>(values.data(), values.size())));
    }
    const auto& config = m.config();
    if (config.input_to_synapse_routing != routing::none) {
        const auto index = m.synapse_input_index();
        const std::vector<std::int64_t> shape{static_cast<std::int64_t>(index.size())};
        f.tensors.push_back(make_tensor<std::int64_t>(routing_index_name, shape, index));
        std::vector<std::uint8_t> mask;
        for (const auto v : m.synapse_mask()) mask.push_back(v != T(0) ? 1 : 0);
        auto t = make_tensor<std::uint8_t>(routing_mask_name, shape, mask);
        t.type = dtype::boolean;  // as PyTorch stores it
        f.tensors.push_back(std::move(t));
    } else {  // the published placeholders (nn.Parameter(None)), so that its load_state_dict takes the file
        for (const char* name : {routing_index_name, routing_mask_name})
            f.tensors.push_back(make_tensor<float>(name, {0}, {}));
    }
    f.metadata["format"] = "elmneuron";
    f.metadata["model_version"] = to_string(config.version);
    f.metadata["config"] = to_json(config);
    return f;
}

template <class T>
model<T> load_model(const std::string& path) {
    const fs::path p(path);
    std::error_code ec;
    if (fs::is_directory(p, ec)) {  // a zoo folder: model_config.json and one state dict
        std::vector<fs::path> files;
        for (const auto& e : fs::directory_iterator(p, ec))
            if (e.is_regular_file(ec) && (is_torch_file(e.path()) || has_extension(e.path(), ".safetensors")))
                files.push_back(e.path());
        if (files.size() != 1)
            throw elm::error(path, "*.pt", "exactly one state dict (.pt, .pth or .safetensors) in the folder",
                             std::to_string(files.size()) + " files");
        return load_model<T>(files[0].string());
    }
    if (!fs::exists(p, ec)) throw file_not_found_error(path);
    if (is_torch_file(p)) return with_config_beside<T>(p, read_torch_state_dict(path));
    if (!has_extension(p, ".safetensors"))
        throw elm::error(path, "path", "a model folder, *.pt, *.pth or *.safetensors",
                         p.extension().string());
    const auto f = read_safetensors(path);
    const auto config = f.metadata.find("config");
    if (config == f.metadata.end()) {  // a plain state dict (safetensors.torch.save_file)
        if (fs::exists(config_beside(p), ec)) return with_config_beside<T>(p, f);
        throw elm::error(path, "__metadata__.config", "the model config JSON", "missing",
                         "a plain state dict needs model_config.json beside it");
    }
    const auto format = f.metadata.find("format");
    if (format != f.metadata.end() && format->second != "elmneuron")
        throw elm::error(
            path, "__metadata__.format", "elmneuron", format->second,
            format->second.starts_with("elmneuron.checkpoint")
                ? "a training checkpoint: use best_model.safetensors or final_model.safetensors of "
                  "the run folder"
                : "");
    auto version = model_version::v1;
    if (const auto v = f.metadata.find("model_version"); v != f.metadata.end()) {
        if (v->second == to_string(model_version::v2))
            version = model_version::v2;
        else if (v->second != to_string(model_version::v1))
            throw elm::error(path, "__metadata__.model_version", "v1 or v2", v->second);
    }
    return model_from_state_dict<T>(parse_model_config(config->second, path + " (metadata config)", version),
                                    f);
}

template <class T>
void save_model(const std::string& path, const model<T>& m) {
    if (!has_extension(fs::path(path), ".safetensors"))
        throw elm::error(path, "path", "a *.safetensors file name", fs::path(path).extension().string(),
                         "models are saved as safetensors");
    auto f = state_dict(m);
    f.source = path;
    write_safetensors(path, f);
}

#define ELM_MODEL_FILE_INSTANTIATE(T)                                                    \
    template model<T> load_model<T>(const std::string&);                                 \
    template void save_model<T>(const std::string&, const model<T>&);                    \
    template model<T> model_from_state_dict<T>(const model_config&, const tensor_file&); \
    template tensor_file state_dict<T>(const model<T>&);
ELM_MODEL_FILE_INSTANTIATE(float)
ELM_MODEL_FILE_INSTANTIATE(double)
#undef ELM_MODEL_FILE_INSTANTIATE

}  // namespace elm
