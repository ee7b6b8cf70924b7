#pragma once
// ELM_ASSERT: always-on check of an internal invariant (a failure is a bug, not bad input).
// ELM_DASSERT: the same, only in debug and sanitizer builds.

#include <cstdio>
#include <cstdlib>

#define ELM_ASSERT(cond)                                                                              \
    do {                                                                                              \
        if (!(cond)) {                                                                                \
            std::fprintf(stderr, "elmneuron internal error: %s:%d: %s\n", __FILE__, __LINE__, #cond); \
            std::abort();                                                                             \
        }                                                                                             \
    } while (0)

#ifdef NDEBUG
#define ELM_DASSERT(cond) ((void)0)
#else
#define ELM_DASSERT(cond) ELM_ASSERT(cond)
#endif
