"""What the tools that run a trained model share: loading it (a checkpoint or a Hugging Face folder)
and its tokenizer, streamed sample text, the exported folder's model card."""
