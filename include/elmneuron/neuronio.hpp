#pragma once
// NeuronIO simulation files (Beniaguev et al. 2021; reference/datasets.md §1.4-1.5): the published
// pickles (Python-2 protocol 2, also Python-3-written ones at protocols 1-5) read into a sparse form, and a
// converted safetensors cache of that form. Nothing in a pickle is executed: the file is parsed by the
// restricted unpickler (src/io/pickle.hpp) with only the numpy globals the layout needs.
//
// What is kept per simulation is what the published conversion (ELM neuronio_data_utils.py, fit_CNN.py)
// turns into tensors:
//   X[t][c] = 1 for every input event (t, c); channels 0..S-1 are the excitatory synapses of segments
//             0..S-1 (exInputSpikeTimes), S..2S-1 the inhibitory ones (inhInputSpikeTimes). The model input
//             is X · synapse_type with synapse_type = +1 for c < S and -1 otherwise (neuronio_synapse_sign).
//   y_spike[t] = 1 at t = int(float(t_out) - 0.5) for every output spike time t_out (float16 in the file:
//             late spikes are quantised to 2-4 ms, and the target is defined on those quantised values).
//   y_soma[t] = somaVoltageLowRes[t] in mV, raw (no clipping, bias or scale; the loaders apply those).
// The high-res traces, nexus voltage and dendritic voltages (~1 GB per file) are skipped without being read.

#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace elm {

struct neuronio_simulation {
    // Input events sorted by (time, channel), no duplicates. time in [0, duration_ms), channel in
    // [0, 2·num_segments).
    std::vector<std::int32_t> event_time;
    std::vector<std::int32_t> event_channel;
    std::vector<std::uint8_t> spike;  // [duration_ms], 0/1
    std::vector<float> soma_mv;       // [duration_ms], somaVoltageLowRes decoded exactly (float16 -> float)
};

struct neuronio_file {
    std::string source;    // the original .p file (also when loaded from a cache), for error messages
    int num_segments = 0;  // len(Params['allSegmentsType']); 639 in the published data
    int duration_ms = 0;   // samples per simulation; 6000 in the published data
    std::vector<neuronio_simulation> simulations;

    int num_channels() const { return 2 * num_segments; }  // 1278 in the published data
};

// +1 for excitatory channels (c < num_segments), -1 for inhibitory ones (create_neuronio_input_type).
inline float neuronio_synapse_sign(int channel, int num_segments) {
    return channel < num_segments ? 1.0f : -1.0f;
}

// Reads one simulation pickle (memory-mapped read-only; the skipped arrays are never touched). Accepts
// the published Python-2 files (BINSTRING keys, numpy.core.multiarray globals) and Python-3-written ones
// (BINUNICODE keys, _codecs.encode raw buffers, numpy._core.multiarray globals; at protocol 5 arrays as
// numpy(._)core.numeric._frombuffer). Every value used is validated: segment indices in [0, num_segments),
// input times (a list, or an integer array) integral in [0, duration), output spike times finite with
// 0 <= t and int(t - 0.5) < duration (bin max(int(t - 0.5), 0): the published int() truncates toward zero;
// a negative time is refused), soma finite, one duration for all simulations and equal
// to Params['totalSimDurationInSec'] · 1000 when that is present. Throws elm::file_not_found_error, or
// elm::error naming the file and the key path (e.g. "Results.listOfSingleSimulationDicts[3]
// .exInputSpikeTimes[12]") on anything malformed, including a global outside the numpy allow-list.
neuronio_file read_neuronio_file(const std::string& path);
// The same from bytes in memory (tests, fuzzing); `source` names them in errors.
neuronio_file parse_neuronio_pickle(std::span<const std::byte> bytes, std::string_view source);

// Converted cache: a safetensors file (atomic write) with tensors
//   event_offset I64 [n_sim + 1]   simulation i owns events [event_offset[i], event_offset[i+1])
//   event_time   I16 or I32 [n_events]   (I16 when every value fits)
//   event_channel I16 or I32 [n_events]
//   spike        U8  [n_sim, duration_ms]
//   soma_mv      F32 [n_sim, duration_ms]
// and metadata format = "elmneuron.neuronio.v1", source, num_segments, duration_ms (plus cache_key when
// written by load_neuronio). The reader checks everything the pickle reader guarantees (sorted unique
// events in range, 0/1 spikes, finite soma). write_neuronio_cache throws elm::error for an inconsistent
// neuronio_file.
void write_neuronio_cache(const std::string& path, const neuronio_file& file);
neuronio_file read_neuronio_cache(const std::string& path);

// read_neuronio_file, or with cache_dir: the cache file "<file name>.<size>.<mtime ns>.neuronio.safetensors"
// in cache_dir (created if needed) when it exists and its cache_key matches, else read the pickle and write
// that cache. A cache that exists but cannot be read is an elm::error (delete it to rebuild).
neuronio_file load_neuronio(const std::string& path, const std::string& cache_dir = "");

// `dir_or_file` itself if it is a file; for a folder, its files (not recursive) whose name ends in ".p" (the
// published files), ".pkl" or ".pickle" (in any case) and does not start with "." (hidden, as for Python's
// glob: e.g. macOS's "._x.p" beside "x.p"), sorted by name (sidecar JSON and cache files beside them are not
// pickles). Throws elm::file_not_found_error for a missing path and elm::error for a folder
// without such files.
std::vector<std::string> list_neuronio_files(const std::string& dir_or_file);
// The same for several files or folders, concatenated in the order given; a file reached twice (by itself
// and through its folder, or named twice) is an elm::error: it would count twice in every metric.
std::vector<std::string> list_neuronio_files(const std::vector<std::string>& paths);

}  // namespace elm
