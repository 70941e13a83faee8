"""Training: one loop for pre-training, fine-tuning, training from scratch and zero-shot use."""
