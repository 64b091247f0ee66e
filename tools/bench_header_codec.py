"""The bus header: msgspec's MessagePack encoder/decoder against msgpack-python, same headers.

For three real headers (``bus.codec.encode`` of the demo source's 4-sample frame, of a 24 B
frame, of a 1 MiB frame whose array travels as its own part), times ``msgpack.packb`` /
``msgspec.msgpack.Encoder().encode`` and ``msgpack.unpackb`` /
``msgspec.msgpack.Decoder().decode`` (the exact calls ``bus.codec`` makes), after checking that
both write the same bytes and read the same objects. Each figure: best of 7 batches, ``--repeats``
interleaved rounds, median over the rounds; ratio = msgspec / msgpack time (lower: msgspec faster).

    python tools/bench_header_codec.py [--repeats 5]
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import msgpack
import msgspec
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _bench_util import machine_info, median, time_per_call  # noqa: E402

from genki_signals.bus.codec import encode  # noqa: E402


def headers() -> dict[str, dict]:
    t = np.arange(4) / 100
    demo = {"timestamp": t, "sine_0": np.sin(t), "sine_1": np.cos(t), "noise": t * 0.5}
    small = {"timestamp": np.array([1.0]), "x": np.arange(24, dtype=np.uint8)}
    big = {"timestamp": np.array([1.0]), "x": np.zeros(1 << 20, dtype=np.uint8)}
    out = {}
    for name, frame in (("demo 4 samples", demo), ("24 B", small), ("1 MiB (zero-copy)", big)):
        parts = encode("signals/main", frame, node_id="signals", seq=123456, publish_time=12.5,
                       acquired=12.46)
        out[name] = msgpack.unpackb(parts[1], raw=False)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args(argv)
    enc, dec = msgspec.msgpack.Encoder().encode, msgspec.msgpack.Decoder().decode
    packb, unpackb = msgpack.packb, msgpack.unpackb
    print(f"machine: {machine_info()}, msgspec {msgspec.__version__}")
    print(f"load average at start: {os.getloadavg()[0]:.2f}")
    rows = []
    for name, header in headers().items():
        data = packb(header, use_bin_type=True)
        assert enc(header) == data, f"{name}: msgspec wrote other bytes than msgpack"
        view = memoryview(data)
        assert dec(view) == unpackb(view, raw=False, use_list=True, strict_map_key=True)
        cases = {
            "encode msgpack": lambda: packb(header, use_bin_type=True),
            "encode msgspec": lambda: enc(header),
            "decode msgpack": lambda: unpackb(view, raw=False, use_list=True,
                                              strict_map_key=True),
            "decode msgspec": lambda: dec(view),
        }
        times: dict[str, list[float]] = {k: [] for k in cases}
        for r in range(args.repeats):
            order = list(cases) if r % 2 == 0 else list(reversed(cases))
            for key in order:
                times[key].append(time_per_call(cases[key], budget=0.1, batches=7))
        m = {k: median(v) for k, v in times.items()}
        rows.append((name, len(data), m))
    print(f"load average at end: {os.getloadavg()[0]:.2f}; medians of {args.repeats} "
          "interleaved rounds, us per call\n")
    print(f"{'header':<18} {'bytes':>6} {'enc msgpack':>12} {'enc msgspec':>12} {'ratio':>6} "
          f"{'dec msgpack':>12} {'dec msgspec':>12} {'ratio':>6}")
    for name, size, m in rows:
        e1, e2, d1, d2 = (m[k] * 1e6 for k in ("encode msgpack", "encode msgspec",
                                                 "decode msgpack", "decode msgspec"))
        print(f"{name:<18} {size:>6} {e1:12.2f} {e2:12.2f} {e2 / e1:6.2f} {d1:12.2f} "
              f"{d2:12.2f} {d2 / d1:6.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
