"""The active-learning core shared by both tracks: seeding, configs, checkpoints, run tables."""
