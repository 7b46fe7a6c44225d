"""`recolor apply`: colorize photos and films at full resolution.

Modules: `plan` (inputs -> jobs and output names), `network` (the generator run on batches of
render-size L), `pipeline` (decoding, batching and encoding threads, the run and its summary),
`join` (the full-resolution join of ab with the photo's own L), `shard` (one run across processes),
`report` (progress, summary, contact sheet) and `films`.
"""
