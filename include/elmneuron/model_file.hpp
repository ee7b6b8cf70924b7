#pragma once
// Loading and saving whole models: our safetensors format (published state-dict names, full config JSON
// in the metadata; loadable by safetensors.torch.load_file) and the official pretrained models
// (a folder with model_config.json and a .pt state dict, or a .pt file with model_config.json beside it).

#include <elmneuron/model.hpp>
#include <elmneuron/tensor_file.hpp>

#include <string>

namespace elm {

// Detects the format from the path: a folder, *.pt or *.safetensors. Throws elm::error on anything else.
template <class T>
model<T> load_model(const std::string& path);

template <class T>
void save_model(const std::string& path, const model<T>& m);  // atomic

// Building blocks, also used by the parity tests: a model from a config and a state dict.
template <class T>
model<T> model_from_state_dict(const model_config& config, const tensor_file& state_dict);
template <class T>
tensor_file state_dict(const model<T>& m);  // with "config" and "model_version" metadata

}  // namespace elm
