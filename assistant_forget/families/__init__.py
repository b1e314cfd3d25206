"""Model families: the assistant's transformer (assistant/) and any nn.Module with a keyed dataset (module.py)."""
