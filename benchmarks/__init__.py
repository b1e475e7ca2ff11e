"""pico-llm benchmarks: `python -m benchmarks [--only NAME ...] [--quick] [--out results/benchmarks]`.

Each benchmark compares implementations side by side in one process, interleaved round by round, after
warm-up, and reports the median of >= 5 measured repetitions with the machine it ran on. Results go to
<out>/<name>.json and one Markdown summary, <out>/benchmarks.md. See docs/benchmarks.md.
"""
