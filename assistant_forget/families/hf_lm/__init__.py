"""The `hf-causal-lm` model family: a local Hugging Face causal LM personalised by per-day LoRA adapters.

family.py binds it to the toolkit's protocol (core/family.py); checkpoint.py checks and loads the base
directory offline; config.py holds the validated LoRA and training settings; text.py the causal-LM loss;
publish.py the adapter export. docs/lm.md is the guide. Importing this package loads no model and no
transformers: the family does, when it is created.
"""
