"""exposure: reproduce and extend the exposure-bias study for UniLM seq2seq models."""

__version__ = "0.1.0"
