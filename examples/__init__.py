"""Data package: the example recording and its clean original (see make_example.py)."""
