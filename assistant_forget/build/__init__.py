"""Building the base model: training and evaluation on public text (used by tools/build_base_model.py)."""
