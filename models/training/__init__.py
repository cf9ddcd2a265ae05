"""Training AVE-Net / AVOL-Net from image-sound pairs (torch; never imported by serving)."""
