"""Where models come from: the built-in registry, weights folders, run folders and the Hugging Face Hub.

`recolor models list|pull|verify` is this package's command; apply, eval and train resolve their
`--model` / `--init-from` through it.
"""
