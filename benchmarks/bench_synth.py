"""The synthetic fab's speed: generating and encoding lots, beside reading them back.

What `yieldops synth` and the demo do by default, three lots of two wafers, timed in
stages (median of ``--repeat`` runs, after one warm-up): ``generate_lot`` (dies, test
results, bins), ``lot_to_bytes`` (the STDF encoding) and the file write; as the
yardstick, the same files decoded by yieldops' reader (``read_tables``, six tables).

    python benchmarks/bench_synth.py
    python benchmarks/bench_synth.py --lots 3 --wafers 2 --repeat 7
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time


def timed(work, repeat: int) -> tuple[float, object]:
    """Median seconds of ``work()`` over ``repeat`` runs after a warm-up, and its result."""
    result = work()
    seconds = []
    for _ in range(repeat):
        started = time.perf_counter()
        result = work()
        seconds.append(time.perf_counter() - started)
    return statistics.median(seconds), result


def main() -> None:
    from yieldops.stdf import read_tables
    from yieldops.synth import DEFAULT_PRODUCT, generate_lot, lot_to_bytes, synthesize

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lots", type=int, default=3)
    parser.add_argument("--wafers", type=int, default=2, help="per lot")
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    indices = range(args.lots)

    def generate():
        return [generate_lot(DEFAULT_PRODUCT, i, 0, args.wafers) for i in indices]

    generate_s, lots = timed(generate, args.repeat)
    encode_s, encoded = timed(lambda: [lot_to_bytes(lot) for lot in lots], args.repeat)
    with tempfile.TemporaryDirectory(prefix="yieldops-bench-synth-") as out:
        synthesize_s, paths = timed(
            lambda: synthesize(out, lots=args.lots, wafers_per_lot=args.wafers, seed=0),
            args.repeat,
        )
        read_s, _ = timed(lambda: [read_tables(path) for path in paths], args.repeat)
    megabytes = sum(len(data) for data in encoded) / 1e6
    dies = sum(wafer.n_dies for lot in lots for wafer in lot.wafers)
    print(
        f"{args.lots} lots x {args.wafers} wafers of {DEFAULT_PRODUCT.name}: {dies:,} dies, "
        f"{megabytes:.2f} MB of STDF; median of {args.repeat} runs\n"
    )
    print(f"{'stage':44} {'seconds':>8} {'MB/s':>8}")
    for stage, seconds in (
        ("generate_lot", generate_s),
        ("lot_to_bytes", encode_s),
        ("synthesize (generate, encode, write)", synthesize_s),
        ("read back: yieldops.stdf.read_tables", read_s),
    ):
        print(f"{stage:44} {seconds:8.3f} {megabytes / seconds:8.1f}")


if __name__ == "__main__":
    main()
