"""pico-llm: train and compare small language models on TinyStories, reproducibly."""
__version__ = "0.1.0"
