"""The shipped forgetting methods, one module each, registered when imported (core/method.py loads a method's
module on first use, so planning with `fast` never imports SISA's torch code).

Commit to a device: fast, exact, auto, retrain, subtraction, finetune. Measured only: sisa, neggrad+.
"""
