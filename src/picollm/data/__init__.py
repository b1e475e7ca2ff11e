"""Data: raw-text sources (download/generate), tokenizers, and token arrays with the window sampler."""
