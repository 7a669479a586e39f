"""Tools around the layers, not layers: the paper's overhead table (``overhead``), interleaved timing and
memory measurement for the benchmarks and CLI (``timing``; peak-RSS reads are Linux-only), and the slow
per-sample reference computations the tests and benchmarks compare against (``reference``).
"""
