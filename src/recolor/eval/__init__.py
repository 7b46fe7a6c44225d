"""`recolor eval`: models scored against the gray baseline on held-out photos.

Modules: `protocol` (the photos and the run), `models` (gray and each MODEL through the engine),
`metrics` (pure functions on batches), `samples` (sheets of each model's worst photos) and `report`
(rows, JSON and tables).
"""
