"""Real-world files: photos (reading, 16 bit, colour profiles and EXIF, writing, atomic files) and films.

This package imports nothing at import time; each module brings in what it needs (Pillow, tifffile,
pypng, PyAV). No module here imports torch.
"""
