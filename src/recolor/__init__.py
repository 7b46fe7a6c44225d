"""recolor: bring color to black-and-white photographs with U-Net GANs in CIE Lab."""

# The one place the version lives: pyproject.toml reads it from here, and
# `recolor --version` prints it without importing torch.
__version__ = "0.1.0"
