"""``make bench``: time to first audio, interruption, CPU and concurrency of cosyvoice-stream,
measured against the physical floor and the alternatives users have today. See ``run.py`` and
docs/benchmarks.md."""
