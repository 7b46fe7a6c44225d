"""`recolor apply`: colorize photos and films at full resolution.

Modules: `plan` (inputs -> jobs and output names), `pipeline` (decoding, batching, the network and
encoding threads, the run's summary), `join` (the full-resolution join of ab with the photo's own L),
`shard` (one run across processes), `report` (progress, summary, contact sheet) and `films`.
"""
