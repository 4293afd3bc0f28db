"""Performance benchmark of tui-quantreport against torch's ModelReport.

Run ``python -m benchmarks.run --help`` (or ``make bench``) from the repository
root. A benchmark is not a test: nothing here asserts on a number.
"""
