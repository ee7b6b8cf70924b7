#!/usr/bin/python3
"""Writes small NeuronIO simulation pickles (reference/datasets.md §1.4) for tests/unit/test_neuronio_reader.cpp.

    make_neuronio_fixture.py OUT_DIR

Files written to OUT_DIR:
  py3.p          pickle.dump(experiment, protocol=2) from Python 3 (BINUNICODE keys, _codecs.encode raw
                 buffers, numpy.core.multiarray globals), the published dict layout, 3 sims x 1000 ms x 10
                 segments; sim 1 has a big-endian soma, sim 2 a Fortran-ordered 2-D DVT array and float32
                 output spike times, sim 0 no output spikes (an empty array: __builtin__.bytes()).
  py3_numpy2.p   py3.p with the numpy >= 2 module name numpy._core.multiarray.
  py3_p4.p       the same experiment at protocol 4 (BINBYTES, STACK_GLOBAL, MEMOIZE, FRAME).
  py3_p5.p       the same experiment at protocol 5, Python >= 3.14's default (contiguous arrays as
                 numpy.core.numeric._frombuffer(buffer, dtype, shape, order), their data in-band as BYTEARRAY8).
  py3_p5_numpy2.p  py3_p5.p as numpy >= 2 writes it: numpy._core.numeric._frombuffer.
  py2.p          the same experiment as Python 2's cPickle writes it at protocol 2 (SHORT_BINSTRING /
                 BINSTRING keys and raw buffers, numpy.core.multiarray GLOBALs, dtype args (code, 0, 1),
                 memoized globals and dtypes reused with BINGET/LONG_BINGET), by an explicit opcode writer.
  expected.json  what the published conversion (fit_CNN.py / ELM neuronio_data_utils.py) makes of it:
                 num_segments, duration_ms, per simulation the sorted (time, channel) input events
                 (channel = segment for excitatory, num_segments + segment for inhibitory), the output
                 spike bins int(float(t) - 0.5) and somaVoltageLowRes as floats.
  bad_*.p        malformed variants (see the C++ test for the error each must give).
  hostile_*.p    pickles that would create OUT_DIR/pwned_* if they were executed.
"""

import json
import os
import pickle
import pickletools
import struct
import sys

import numpy as np

NUM_SEGMENTS = 10
DURATION_MS = 1000
NUM_SIMS = 3
HIGH_RES = 8


def make_experiment(seed=20240227):
    rng = np.random.RandomState(seed)
    seg_types = ['basal'] * 4 + ['apical'] * (NUM_SEGMENTS - 4)
    sims = []
    for k in range(NUM_SIMS):
        sim = {}
        sim['recordingTimeHighRes'] = np.arange(0, DURATION_MS, 1.0 / HIGH_RES).astype(np.float32)
        sim['somaVoltageHighRes'] = (-70 + 5 * rng.randn(DURATION_MS * HIGH_RES)).astype(np.float16)
        sim['nexusVoltageHighRes'] = (-70 + 5 * rng.randn(DURATION_MS * HIGH_RES)).astype(np.float16)
        sim['recordingTimeLowRes'] = np.arange(0, DURATION_MS).astype(np.float32)
        soma = (-72 + 8 * rng.randn(DURATION_MS)).astype(np.float16)
        soma[10] = np.float16(33.0)  # a spike peak
        if k == 1:
            soma = soma.astype('>f2')  # big-endian buffer: endian char '>'
        sim['somaVoltageLowRes'] = soma
        sim['nexusVoltageLowRes'] = (-70 + 5 * rng.randn(DURATION_MS)).astype(np.float16)
        for name in ('exInputSpikeTimes', 'inhInputSpikeTimes'):
            spikes = rng.rand(NUM_SEGMENTS, DURATION_MS) < 0.02
            spikes[:, 0] |= (k == 2)  # events at t = 0 are valid
            spikes[:, DURATION_MS - 1] |= (k == 1)  # and at the last ms
            d = {}
            # Simulation 1: segment keys and times in descending order; simulation 2: a repeated time.
            for seg in (reversed(range(NUM_SEGMENTS)) if k == 1 else range(NUM_SEGMENTS)):
                if seg == 3:
                    continue  # segments without spikes are absent
                times = list(np.nonzero(spikes[seg])[0])  # numpy.int64 times
                d[np.int64(seg)] = times[::-1] if k == 1 else times + times[-1:] if k == 2 and seg == 5 else times
            if k == 2:  # one segment's times as an integer array (the published conversion indexes with them)
                d[np.int64(7)] = np.array(d[np.int64(7)], dtype=np.int32)
                d[np.int64(3)] = np.array([], dtype=np.float64)  # and an empty one, of any dtype
            sim[name] = d
        if k == 0:
            out = np.array([], dtype=np.float16)
        else:
            # 700.1 and 700.2 both become float16 700.0 (one bin); 999.4 -> float16 999.5 -> bin 999 (the last); 0.5 -> bin 0.
            out = np.array([0.5, 12.3, 700.1, 700.2, 512.75, 999.4], dtype=np.float16)
        if k == 2:  # and a spike in the first half millisecond: int(0.125 - 0.5) = 0, bin 0 as well
            out = np.concatenate([[0.125], out]).astype(np.float32)
        sim['outputSpikeTimes'] = out
        dvt = (-70 + 5 * rng.randn(NUM_SEGMENTS, DURATION_MS)).astype(np.float16)
        sim['dendriticVoltagesLowRes'] = np.asfortranarray(dvt) if k == 2 else dvt
        sims.append(sim)
    n_out = [len(s['outputSpikeTimes']) for s in sims]
    params = {
        'randomSeed': seed, 'numSimulations': NUM_SIMS, 'totalSimDurationInSec': DURATION_MS // 1000,
        'collectAndSaveDVTs': True, 'numSamplesPerMS_HighRes': HIGH_RES, 'excitatorySynapseType': 'NMDA',
        'inhibitorySynapseType': 'GABA_A', 'useActiveDendrites': True, 'Ih_vshift': 0,
        'inst_rate_sampling_time_interval_options_ms': [25, 30, 35, 40, 45, 55, 60, 65, 70, 75, 80, 85, 90, 100, 150, 200, 300, 450],
        'num_bas_ex_spikes_per_100ms_range': [0, 800], 'num_bas_ex_inh_spike_diff_per_100ms_range': [-600, 200],
        'num_apic_ex_spikes_per_100ms_range': [0, 800], 'num_apic_ex_inh_spike_diff_per_100ms_range': [-600, 200],
        'allSectionsType': ['basal', 'basal', 'apical', 'apical', 'apical'],
        'allSections_DistFromSoma': [10.0, 20.0, 30.0, 40.0, 50.0], 'allSectionsLength': [20.0, 20.0, 30.0, 40.0, 50.0],
        'allSegmentsType': seg_types, 'allSegmentsLength': [10.0] * NUM_SEGMENTS,
        'allSegments_DistFromSoma': [float(5 * i) for i in range(NUM_SEGMENTS)],
        'allSegments_SectionDistFromSoma': [float(5 * (i // 2)) for i in range(NUM_SEGMENTS)],
        'allSegments_SectionInd': [i // 2 for i in range(NUM_SEGMENTS)],
        'ISICV': np.float64(0.75), 'listOfISIs': [np.float16(12.5), np.float16(300.0)],
        'numOutputSpikesPerSim': n_out, 'totalNumOutputSpikes': sum(n_out),
        'totalNumSimulationSeconds': NUM_SIMS * DURATION_MS // 1000, 'averageOutputFrequency': 1.25,
        'entireExperimentDurationInMinutes': 0.5,
    }
    return {'Params': params, 'Results': {'listOfSingleSimulationDicts': sims}}


def expected_values(exp):
    """The published conversion (fit_CNN.py parse_sim_experiment_file), kept sparse."""
    S = len(exp['Params']['allSegmentsType'])
    sims = []
    for sim in exp['Results']['listOfSingleSimulationDicts']:
        duration = len(sim['somaVoltageLowRes'])
        X = np.zeros((2 * S, duration), dtype=bool)
        for row0, name in ((0, 'exInputSpikeTimes'), (S, 'inhInputSpikeTimes')):  # dict2bin: time by time
            for seg, times in sim[name].items():
                for t in times:
                    X[row0 + seg, t] = True
        ch, t = np.nonzero(X)
        order = np.lexsort((ch, t))
        y_spike = np.zeros(duration)
        y_spike[(sim['outputSpikeTimes'].astype(float) - 0.5).astype(int)] = 1.0
        sims.append({
            'events': [[int(t[i]), int(ch[i])] for i in order],
            'spikes': [int(i) for i in np.nonzero(y_spike)[0]],
            'soma': [float(v) for v in sim['somaVoltageLowRes'].astype(np.float64)],
        })
    return {'num_segments': S, 'duration_ms': len(exp['Results']['listOfSingleSimulationDicts'][0]['somaVoltageLowRes']),
            'simulations': sims}


class Py2Writer:
    """Protocol-2 opcodes as Python 2's cPickle emits them for this layout (str = byte string)."""

    def __init__(self, module='numpy.core.multiarray'):
        self.out = bytearray(b'\x80\x02')
        self.memo = {}
        self.module = module

    def put(self, key):
        i = len(self.memo)
        self.memo[key] = i
        self.out += (b'q' + bytes([i])) if i < 256 else (b'r' + struct.pack('<I', i))

    def get(self, key):
        i = self.memo[key]
        self.out += (b'h' + bytes([i])) if i < 256 else (b'j' + struct.pack('<I', i))

    def global_(self, module, name):
        key = ('global', module, name)
        if key in self.memo:
            return self.get(key)
        self.out += b'c' + module.encode() + b'\n' + name.encode() + b'\n'
        self.put(key)

    def string(self, s, memo=True):
        if isinstance(s, str):
            s = s.encode('latin1')
        key = ('str', s)
        if memo and key in self.memo:
            return self.get(key)
        self.out += (b'U' + bytes([len(s)]) if len(s) < 256 else b'T' + struct.pack('<i', len(s))) + s
        if memo:
            self.put(key)
        else:
            self.put(('unique', len(self.memo)))

    def integer(self, v):
        if 0 <= v < 256:
            self.out += b'K' + bytes([v])
        elif 0 <= v < 65536:
            self.out += b'M' + struct.pack('<H', v)
        elif -2**31 <= v < 2**31:
            self.out += b'J' + struct.pack('<i', v)
        else:
            b = v.to_bytes(9, 'little', signed=True).rstrip(b'\x00') or b'\x00'
            self.out += b'\x8a' + bytes([len(b)]) + b

    def tuple_(self, items):
        if not items:
            self.out += b')'
            return
        if len(items) <= 3:
            for x in items:
                self.save(x)
            self.out += bytes([0x84 + len(items)])
        else:
            self.out += b'('
            for x in items:
                self.save(x)
            self.out += b't'
        self.put(('unique', len(self.memo)))

    def dtype(self, dt):
        key = ('dtype', dt.str)
        if key in self.memo:
            return self.get(key)
        self.global_('numpy', 'dtype')
        code = dt.str[1:]
        self.tuple_([code, 0, 1])  # py2 numpy: (code, 0, 1)
        self.out += b'R'
        self.put(key)
        endian = '|' if dt.itemsize == 1 else dt.str[0]
        self.tuple_([3, endian, None, None, None, -1, -1, 0])
        self.out += b'b'

    def ndarray(self, a):
        self.global_(self.module, '_reconstruct')
        self.global_('numpy', 'ndarray')
        self.tuple_([0])
        self.string(b'b')
        self.out += b'\x87'
        self.put(('unique', len(self.memo)))
        self.out += b'R'
        self.put(('unique', len(self.memo)))
        fortran = a.ndim > 1 and a.flags.f_contiguous and not a.flags.c_contiguous
        self.out += b'(' + b'K\x01'
        self.tuple_(list(a.shape))
        self.dtype(a.dtype)
        self.out += b'\x88' if fortran else b'\x89'
        self.string(a.tobytes(order='F' if fortran else 'C'), memo=False)
        self.out += b't'
        self.put(('unique', len(self.memo)))
        self.out += b'b'

    def scalar(self, x):
        self.global_(self.module, 'scalar')
        self.dtype(x.dtype)
        self.string(x.tobytes(), memo=False)
        self.out += b'\x86'
        self.put(('unique', len(self.memo)))
        self.out += b'R'
        self.put(('unique', len(self.memo)))

    def container(self, opcode_empty, items, single, many):
        self.out += opcode_empty
        self.put(('unique', len(self.memo)))
        for start in range(0, len(items), 1000):
            batch = items[start:start + 1000]
            if len(batch) == 1:
                for x in batch[0]:
                    self.save(x)
                self.out += single
            else:
                self.out += b'('
                for entry in batch:
                    for x in entry:
                        self.save(x)
                self.out += many

    def save(self, x):
        if x is None:
            self.out += b'N'
        elif isinstance(x, RawOps):
            self.out += x.ops
        elif isinstance(x, (bool, np.bool_)):
            self.out += b'\x88' if x else b'\x89'
        elif isinstance(x, np.ndarray):
            self.ndarray(x)
        elif isinstance(x, np.generic):
            self.scalar(x)
        elif isinstance(x, int):
            self.integer(x)
        elif isinstance(x, float):
            self.out += b'G' + struct.pack('>d', x)
        elif isinstance(x, (str, bytes)):
            self.string(x)
        elif isinstance(x, tuple):
            self.tuple_(list(x))
        elif isinstance(x, list):
            self.container(b']', [(v,) for v in x], b'a', b'e')
        elif isinstance(x, dict):
            self.container(b'}', list(x.items()), b's', b'u')
        else:
            raise TypeError(type(x))

    def dumps(self, x):
        self.save(x)
        self.out += b'.'
        return bytes(self.out)


class RawOps:
    """Opcodes the Py2Writer copies verbatim (hostile fixtures)."""

    def __init__(self, ops):
        self.ops = ops


class Evil:
    def __init__(self, func, arg):
        self.func, self.arg = func, arg

    def __reduce__(self):
        return (self.func, (self.arg,))


def frombuffer_pickle(exp, module_name, tamper=None, target=None):
    """`exp` at protocol 5 with its arrays reduced as numpy does there, _frombuffer(buffer, dtype, shape,
    order), but from `module_name` (numpy >= 2 writes numpy._core.numeric); `tamper` may change the
    arguments of the array `target`."""
    import io
    import types
    module = sys.modules.get(module_name) or types.ModuleType(module_name)

    def _frombuffer(buf, dtype, shape, order):
        return np.frombuffer(buf, dtype=dtype).reshape(shape, order=order)

    _frombuffer.__module__, _frombuffer.__qualname__ = module_name, '_frombuffer'
    if not hasattr(module, '_frombuffer'):
        module._frombuffer = _frombuffer
    sys.modules[module_name] = module

    class Pickler(pickle.Pickler):
        def reducer_override(self, obj):
            if type(obj) is np.ndarray and obj.dtype != object and (obj.flags.c_contiguous or obj.flags.f_contiguous):
                args = (pickle.PickleBuffer(obj), obj.dtype, obj.shape, 'C' if obj.flags.c_contiguous else 'F')
                if obj is target:
                    args = tamper(args)
                return module._frombuffer, args
            return NotImplemented

    out = io.BytesIO()
    Pickler(out, protocol=5).dump(exp)
    return out.getvalue()


def main():
    out_dir = sys.argv[1]
    os.makedirs(out_dir, exist_ok=True)

    def write(name, data):
        with open(os.path.join(out_dir, name), 'wb') as f:
            f.write(data)

    exp = make_experiment()
    py3 = pickle.dumps(exp, protocol=2)
    assert b'numpy.core.multiarray\n' in py3 and b'_codecs\nencode\n' in py3
    write('py3.p', py3)
    write('py3_numpy2.p', py3.replace(b'numpy.core.multiarray\n', b'numpy._core.multiarray\n'))
    write('py3_p4.p', pickle.dumps(exp, protocol=4))
    p5 = pickle.dumps(exp, protocol=5)
    p5_ops = {op.name for op, _, _ in pickletools.genops(p5)}
    assert b'_frombuffer' in p5 and 'BYTEARRAY8' in p5_ops, p5_ops
    write('py3_p5.p', p5)
    p5_numpy2 = frombuffer_pickle(exp, 'numpy._core.numeric')
    assert b'numpy._core.numeric' in p5_numpy2 and b'numpy.core.numeric' not in p5_numpy2
    write('py3_p5_numpy2.p', p5_numpy2)
    soma1 = exp['Results']['listOfSingleSimulationDicts'][1]['somaVoltageLowRes']
    write('bad_p5_shape.p', frombuffer_pickle(exp, 'numpy.core.numeric', lambda a: (a[0], a[1], (a[2][0] + 1,), a[3]),
                                              soma1))
    write('bad_p5_order.p', frombuffer_pickle(exp, 'numpy.core.numeric', lambda a: a[:3] + ('K',), soma1))
    py2 = Py2Writer().dumps(exp)
    ops = {op.name for op, _, _ in pickletools.genops(py2)}
    assert {'SHORT_BINSTRING', 'BINSTRING', 'BINGET', 'LONG_BINGET', 'LONG_BINPUT', 'GLOBAL'} <= ops, ops
    assert not ops & {'BINUNICODE', 'SHORT_BINUNICODE', 'STACK_GLOBAL'}, ops
    write('py2.p', py2)
    with open(os.path.join(out_dir, 'expected.json'), 'w') as f:
        json.dump(expected_values(exp), f)
    # The Python-2 writer must produce what Python reads back as the same experiment.
    back = pickle.loads(py2, encoding='latin1')
    assert np.array_equal(back['Results']['listOfSingleSimulationDicts'][1]['somaVoltageLowRes'],
                          exp['Results']['listOfSingleSimulationDicts'][1]['somaVoltageLowRes'])
    assert expected_values(back) == expected_values(exp)

    def variant(name, change):
        e = make_experiment()
        change(e)
        write(name, pickle.dumps(e, protocol=2))

    def sim(e, i):
        return e['Results']['listOfSingleSimulationDicts'][i]

    variant('bad_soma_str.p', lambda e: sim(e, 1).__setitem__('somaVoltageLowRes', ['-70.0'] * DURATION_MS))
    variant('bad_soma_2d.p', lambda e: sim(e, 1).__setitem__('somaVoltageLowRes', np.zeros((DURATION_MS, 1), np.float16)))
    variant('bad_soma_object.p', lambda e: sim(e, 1).__setitem__('somaVoltageLowRes', np.array([1.0], dtype=object)))
    variant('bad_soma_length.p', lambda e: sim(e, 2).__setitem__('somaVoltageLowRes', np.zeros(999, np.float16)))
    variant('bad_soma_nan.p', lambda e: sim(e, 0)['somaVoltageLowRes'].__setitem__(5, np.nan))
    variant('bad_missing_inh.p', lambda e: sim(e, 1).pop('inhInputSpikeTimes'))
    variant('bad_missing_params.p', lambda e: e.pop('Params'))
    variant('bad_missing_segtypes.p', lambda e: e['Params'].pop('allSegmentsType'))
    variant('bad_segment_range.p', lambda e: sim(e, 2)['exInputSpikeTimes'].__setitem__(np.int64(NUM_SEGMENTS), [np.int64(5)]))
    variant('bad_segment_negative.p', lambda e: sim(e, 0)['inhInputSpikeTimes'].__setitem__(np.int64(-1), [np.int64(5)]))
    variant('bad_segment_float.p', lambda e: sim(e, 0)['exInputSpikeTimes'].__setitem__(np.float64(3.0), [np.int64(5)]))
    variant('bad_time_range.p', lambda e: sim(e, 1)['exInputSpikeTimes'][np.int64(7)].append(np.int64(DURATION_MS)))
    variant('bad_time_negative.p', lambda e: sim(e, 1)['inhInputSpikeTimes'][np.int64(2)].append(-3))
    variant('bad_time_str.p', lambda e: sim(e, 1)['inhInputSpikeTimes'][np.int64(2)].append('12'))
    variant('bad_time_float.p', lambda e: sim(e, 1)['exInputSpikeTimes'][np.int64(0)].append(np.float32(12.0)))
    variant('bad_times_not_list.p', lambda e: sim(e, 1)['exInputSpikeTimes'].__setitem__(np.int64(4), 7))
    variant('bad_times_float_array.p', lambda e: sim(e, 1)['exInputSpikeTimes'].__setitem__(
        np.int64(4), np.array([1.0, 2.0], np.float32)))
    variant('bad_times_array_range.p', lambda e: sim(e, 1)['inhInputSpikeTimes'].__setitem__(
        np.int64(2), np.array([5, DURATION_MS], np.uint16)))
    variant('bad_output_early.p', lambda e: sim(e, 1).__setitem__('outputSpikeTimes', np.array([-0.25], np.float16)))
    variant('bad_output_late.p', lambda e: sim(e, 1).__setitem__('outputSpikeTimes', np.array([DURATION_MS + 0.5], np.float32)))
    variant('bad_output_inf.p', lambda e: sim(e, 1).__setitem__('outputSpikeTimes', np.array([np.inf], np.float16)))
    variant('bad_duration.p', lambda e: e['Params'].__setitem__('totalSimDurationInSec', 6))
    variant('bad_num_sims.p', lambda e: e['Params'].__setitem__('numSimulations', 128))
    variant('bad_no_sims.p', lambda e: e['Results'].__setitem__('listOfSingleSimulationDicts', []))
    variant('bad_sim_not_dict.p', lambda e: e['Results']['listOfSingleSimulationDicts'].__setitem__(1, [1, 2]))
    variant('bad_structured_dtype.p', lambda e: sim(e, 0).__setitem__(
        'outputSpikeTimes', np.zeros(2, dtype=[('a', '<f4'), ('b', '<i4')])))

    # Hostile pickles: each would create its marker if Python loaded it.
    def marker(name):
        return os.path.join(out_dir, 'pwned_' + name)

    def hostile(name, payload, where, protocol=2):
        e = make_experiment()
        if where == 'params':
            e['Params']['ISICV'] = payload
        else:
            sim(e, 0)['somaVoltageLowRes'] = payload
        write('hostile_' + name + '.p', pickle.dumps(e, protocol=protocol))

    hostile('posix_system', Evil(os.system, 'touch ' + marker('posix_system')), 'params')  # GLOBAL posix.system
    hostile('eval', Evil(eval, "open(%r, 'w')" % marker('eval')), 'soma', protocol=4)   # STACK_GLOBAL builtins.eval
    hostile('exec', Evil(exec, "open(%r, 'w')" % marker('exec')), 'params')             # __builtin__.exec
    # os.system as the Python-2 originals would name it, inside a Python-2 style file.
    e = make_experiment()
    cmd = ('touch ' + marker('os_system')).encode()
    e['Params']['ISICV'] = RawOps(b'cos\nsystem\n(U' + bytes([len(cmd)]) + cmd + b'tR')
    write('hostile_os_system.p', Py2Writer().dumps(e))
    # INST opcode (protocol 0 call syntax).
    cmd = ('touch ' + marker('inst')).encode()
    write('hostile_inst.p', b'\x80\x02}(U\x06Params(U' + bytes([len(cmd)]) + cmd + b'ios\nsystem\nu.')


if __name__ == '__main__':
    main()
