"""Trainers: the built-in LoRA trainer and adapters for kohya, diffusion-pipe and OneTrainer."""
