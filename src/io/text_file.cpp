#include <elmneuron/tensor_file.hpp>

#include "io/io_detail.hpp"

namespace elm {

void write_text_atomic(const std::string& path, std::string_view text) {
    detail::write_file_atomic(path, std::as_bytes(std::span<const char>(text.data(), text.size())));
}

}  // namespace elm
