#pragma once
// One exception type for every boundary failure (bad file, bad config, bad shape), carrying where the
// problem is (file, field) and what was expected versus what was found, so a user can act on it.
// Bugs are not reported through this type: see ELM_ASSERT in src/util/assert.hpp.

#include <cstdint>
#include <stdexcept>
#include <string>

namespace elm {

class error : public std::runtime_error {
public:
    error(std::string file, std::string field, std::string expected, std::string got, std::string hint = {});

    const std::string& file() const noexcept { return file_; }
    const std::string& field() const noexcept { return field_; }
    const std::string& expected() const noexcept { return expected_; }
    const std::string& got() const noexcept { return got_; }
    const std::string& hint() const noexcept { return hint_; }

private:
    std::string file_, field_, expected_, got_, hint_;
};

// A file that does not exist or cannot be opened (translated to FileNotFoundError in Python).
class file_not_found_error : public error {
public:
    explicit file_not_found_error(const std::string& path);
};

}  // namespace elm
