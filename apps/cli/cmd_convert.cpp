// elmneuron convert IN OUT: any model we can load (official .pt / zoo folder / our safetensors) to our
// safetensors format (published state-dict names, config in the metadata; safetensors.torch.load_file reads
// it).

#include <elmneuron/model_file.hpp>

#include "commands.hpp"

#include <cstdio>
#include <string>

namespace elm::cli {

void register_convert(CLI::App& app) {
    auto* cmd =
        app.add_subcommand("convert", "Convert a model (e.g. an official .pt) to our .safetensors format");
    static std::string in, out, precision = "f32";
    cmd->add_option("input", in,
                    "Model to read: .pt (model_config.json beside it), zoo folder or .safetensors")
        ->required();
    cmd->add_option("output", out, "Output .safetensors file (written atomically)")->required();
    cmd->add_option("--precision", precision, "Stored precision")->check(CLI::IsMember({"f32", "f64"}));
    cmd->callback([] {
        if (precision == "f32")
            save_model(out, load_model<float>(in));
        else
            save_model(out, load_model<double>(in));
        std::printf("wrote %s\n", out.c_str());
    });
}

}  // namespace elm::cli
