"""Decoding: beam search over a UniLM (`beam.py`), the predictions files each run writes and reading
texts to score (`predictions.py`), decoding new sources with a finished run (`generate.py`), and the
article's worked example of beam search going wrong (`demo.py`)."""
