"""A trained generator run for inference: the same engine for apply, films, eval and the Python API.

Modules: `export` (the OpenVINO IR beside a weights folder's safetensors: made with torch, checked
against the weights, cached for folders that have none), `openvino_cpu` (the export on OpenVINO's
CPU plugin: numpy in, numpy out, no torch), `torch_device` (the generator in torch: CUDA, MPS, and
the CPU without OpenVINO) and `choice` (`--engine auto|openvino|torch` and `--device` -> an engine).

Nothing here imports torch at import time; only the torch engine and making an export do.
"""
