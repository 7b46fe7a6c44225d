"""`recolor eval`: models scored against the gray baseline on held-out photos.

Modules: `protocol` (the photos, the models, the run), `metrics` (pure functions on batches),
`samples` (sheets of each model's worst photos) and `report` (rows, JSON and tables).
"""
