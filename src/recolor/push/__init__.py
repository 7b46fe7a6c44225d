"""`recolor push`: a trained run published on the Hugging Face Hub with its generated model card."""
