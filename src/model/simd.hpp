#pragma once
// One SIMD vector type for the model kernels (GCC/Clang vector extensions): the widest the build targets
// (AVX-512: 64 bytes, AVX/AVX2: 32, otherwise 16, which every x86-64 and AArch64 has). Feature rows are
// padded to whole vectors, so every kernel loop runs over whole vectors with no scalar tail, and every
// element of a row goes through the same instructions whatever the batch or the thread count.

#include <cstddef>

namespace elm::detail {

#if defined(ELM_SIMD_BYTES)
inline constexpr std::size_t simd_bytes = ELM_SIMD_BYTES;
#elif defined(__AVX512F__)
inline constexpr std::size_t simd_bytes = 64;
#elif defined(__AVX__)
inline constexpr std::size_t simd_bytes = 32;
#else
inline constexpr std::size_t simd_bytes = 16;
#endif

template <class T>
struct simd {
    static constexpr int lanes = static_cast<int>(simd_bytes / sizeof(T));
    // may_alias: rows are plain T arrays read and written through this type as well.
    typedef T vec __attribute__((vector_size(simd_bytes), aligned(simd_bytes), may_alias));
};

template <class T>
using vec = typename simd<T>::vec;
template <class T>
inline constexpr int lanes = simd<T>::lanes;

template <class T>
vec<T>* as_vec(T* p) {
    return reinterpret_cast<vec<T>*>(p);
}
template <class T>
const vec<T>* as_vec(const T* p) {
    return reinterpret_cast<const vec<T>*>(p);
}

template <class T>
T horizontal_sum(const vec<T>& v) {
    T s = 0;
    for (int l = 0; l < lanes<T>; ++l) s += v[l];
    return s;
}

// Register blocking of the kernels: at most this many vectors of one row in registers at once (with AVX-512,
// 32 vector registers of any width; otherwise 16).
#if defined(__AVX512F__)
inline constexpr int max_block_vectors = 4;
#else
inline constexpr int max_block_vectors = 2;
#endif

// n rounded up to whole vectors: the padded width of a feature row, or the aligned size of a buffer section.
template <class T, class N>
constexpr N padded(N n) {
    constexpr N l = static_cast<N>(simd<T>::lanes);
    return (n + l - 1) / l * l;
}

}  // namespace elm::detail
