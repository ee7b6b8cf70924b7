#pragma once
// Seeded random numbers with the same sequence on every platform and standard library (std:: distributions
// are implementation-defined, so they are not used for anything that must be reproducible).

#include <cstdint>
#include <random>

namespace elm::detail {

class rng {
public:
    explicit rng(std::uint64_t seed) : engine_(seed) {}
    std::uint64_t next() { return engine_(); }
    // Uniform in [0, 1) with 53 random bits.
    double uniform() { return static_cast<double>(engine_() >> 11) * 0x1.0p-53; }
    double uniform(double lo, double hi) { return lo + (hi - lo) * uniform(); }
    // Uniform integer in [0, n) without modulo bias (Lemire's method with rejection).
    std::uint64_t below(std::uint64_t n) {
        const std::uint64_t limit = (0 - n) % n;  // 2^64 mod n
        for (;;) {
            const std::uint64_t r = engine_();
            if (r >= limit) return r % n;
        }
    }

private:
    std::mt19937_64 engine_;
};

}  // namespace elm::detail
