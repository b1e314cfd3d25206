"""The assistant's family: its model, tokenizer, shipped base, nightly personalisation and export."""
