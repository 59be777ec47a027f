"""Training: losses, detail guidance, LR schedule, the trainer loop (imports torch)."""
