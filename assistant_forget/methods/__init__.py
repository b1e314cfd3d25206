"""The shipped forgetting methods, one module each; importing this package registers them (core/method.py).

Commit to a device: fast, exact, auto, retrain, subtraction, finetune. Measured only (in memory, for
benchmarks): sisa, neggrad+. `_shared` holds what more than one of them needs.
"""

from . import auto, exact, fast, finetune, neggrad, retrain, sisa, subtraction  # noqa: F401
