"""Training data: `recolor prepare` turns COCO or a folder of photos into a fast training store.

- `sources`: which files make up the train and val splits (a folder, or COCO-2017 via FiftyOne).
- `preprocess`: one source file -> one square uint8 sRGB crop, or the reason it was skipped.
- `store`: the memory-mapped store on disk, `PreparedImages` (the torch Dataset) and prepare.json.
- `rebalance`: the ab histogram and the per-pixel rebalancing weights (`ABWeights`).
- `prepare`: the command itself, tying the four together (parallel, resumable).

This package imports nothing heavy at import time; torch comes in with `store` and `rebalance`.
"""
