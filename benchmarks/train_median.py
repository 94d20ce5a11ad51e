"""
Median ``train()`` time of the sb3_expo in a given source tree, for same-run before/after comparisons of a change:
run it alternately on two worktrees (``git worktree add``), each call a fresh process, pinned to one core.

    taskset -c 0 python benchmarks/train_median.py /tmp/before demo 60
    taskset -c 0 python benchmarks/train_median.py /tmp/after demo 60

A loop of ``model.train(utd, batch)`` after 10 warm-up calls on a filled buffer (``benchmarks/speed.py``'s
``make_expo`` / ``fill``, ``compile_mode="auto"``, one thread). Prints ``<config> <tree> <median> ms``.
"""

import statistics
import sys
import time

import torch as th


def main() -> None:
    tree, config_name, calls = sys.argv[1], sys.argv[2], int(sys.argv[3])
    th.set_num_threads(1)
    sys.path[:0] = [tree, f"{tree}/benchmarks"]  # that tree's sb3_expo and speed.py, ahead of the installed one
    from speed import CONFIGS, fill, make_expo

    import sb3_expo

    assert sb3_expo.__file__.startswith(tree), sb3_expo.__file__
    config = CONFIGS[config_name]
    model = make_expo(config, "cpu", compile_mode="auto")
    fill(model, 5000)
    for _ in range(10):
        model.train(config["utd"], config["batch_size"])
    times = []
    for _ in range(calls):
        start = time.perf_counter()
        model.train(config["utd"], config["batch_size"])
        times.append(time.perf_counter() - start)
    print(config_name, tree, f"{statistics.median(times) * 1e3:.3f} ms")


if __name__ == "__main__":
    main()
