"""Deciding: the one classification stage, the model's weights, the user's policy and the verdict."""
