"""How long the first ``train()`` call takes with the default ``compile_mode="auto"``: the compilation of its graphs.

Run it with an empty inductor cache to see what a new machine pays (later processes read the graphs from the cache):

    TORCHINDUCTOR_CACHE_DIR=$(mktemp -d) taskset -c 1 python benchmarks/first_call.py --config paper --utd 20

It prints the first and the second ``train(utd)`` call on a filled buffer; their difference is the compilation.
"""

import argparse
import time

import torch as th
from speed import CONFIGS, fill, make_expo


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", choices=sorted(CONFIGS), default="paper")
    parser.add_argument("--utd", type=int, default=None, help="critic updates per call (and policy delay)")
    parser.add_argument("--compile-mode", default="auto")
    args = parser.parse_args()
    th.set_num_threads(1)
    config = CONFIGS[args.config] if args.utd is None else {**CONFIGS[args.config], "utd": args.utd}
    model = make_expo(config, "cpu", compile_mode=None if args.compile_mode == "none" else args.compile_mode)
    fill(model, 10_000)
    times = []
    for _ in range(2):
        start = time.perf_counter()
        model.train(config["utd"], config["batch_size"])
        times.append(time.perf_counter() - start)
    mode = model.resolved_compile_mode
    print(f"{args.config}, UTD {config['utd']}, {mode}: first train() {times[0]:.1f} s, second {times[1]:.1f} s")


if __name__ == "__main__":
    main()
