"""A stand-in for Colab's `google.colab`, for tests/test_colab_like.py only.

A chapter's setup cell installs tinycore only when `import google.colab` succeeds. This directory is
put on the Colab-like kernel's PYTHONPATH so that the import succeeds and the install branch runs.
`google` has no __init__.py (a namespace package), so it shadows no other `google.*` package.
"""

IS_STAND_IN = True  # the real google.colab has no such name
