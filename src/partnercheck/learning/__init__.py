"""Learning: training the shipped and personal models, scoring them, and the user's corrections."""
