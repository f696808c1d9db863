"""Loaded by pytest for every test, notebooks included (tests/conftest.py holds the fixtures)."""

import os

# Kernels that nbval starts inherit this: tinycore.train prints no progress lines into the
# notebooks' outputs, which must match the committed ones.
os.environ.setdefault("TINYCORE_QUIET", "1")
