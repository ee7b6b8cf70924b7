// elmneuron convert IN OUT: any model we can load (official .pt / zoo folder / our safetensors) to our
// safetensors format (published state-dict names, config in the metadata; safetensors.torch.load_file reads
// it).

#include <elmneuron/model_file.hpp>

#include "commands.hpp"

#include <cstddef>
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
        if (precision == "f32") {
            // Read once in float64; parameters stored in float64 that float32 cannot hold are rounded by the
            // cast: said, not silent.
            const auto exact = load_model<double>(in);
            const auto m = exact.cast<float>();
            const auto wide = state_dict(exact), narrow = state_dict(m);
            std::size_t rounded = 0, total = 0;
            for (const auto& t : wide.tensors) {
                const auto a = t.to<double>(), b = narrow.at(t.name).to<double>();
                total += a.size();
                for (std::size_t i = 0; i < a.size(); ++i) rounded += a[i] != b[i];
            }
            if (rounded > 0)
                std::fprintf(stderr,
                             "note: %zu of %zu parameter values are float64 values that float32 rounds; "
                             "--precision f64 keeps them exactly\n",
                             rounded, total);
            save_model(out, m);
        } else {
            save_model(out, load_model<double>(in));
        }
        std::printf("wrote %s\n", out.c_str());
    });
}

}  // namespace elm::cli
