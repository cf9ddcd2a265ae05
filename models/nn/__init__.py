"""The AVE-Net / AVOL-Net model in torch (training and export only; never imported by serving)."""
