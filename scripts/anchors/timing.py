# The timing protocol of every anchor script, as ../shared/anchors/torch_dcgan_step.py: three
# warm-up iterations, then the median and minimum of twenty, and the peak resident memory, on one
# line that `pocketgan-train bench` parses (median_ms=...).
import resource
import statistics
import time

import torch


def report(name, step, **fields):
    for _ in range(3):
        step()
    ts = []
    for _ in range(20):
        t = time.perf_counter()
        step()
        ts.append(time.perf_counter() - t)
    described = " ".join(f"{k}={v}" for k, v in fields.items())
    print(f"torch {torch.__version__} {name} {described} "
          f"median_ms={statistics.median(ts) * 1000:.2f} min_ms={min(ts) * 1000:.2f} "
          f"rss_mb={resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f}")
