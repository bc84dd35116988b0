"""Training the shipped shapes pipelines from scratch (``python -m diffalign.shapes.pretrain``).

- :mod:`.data`: an endless stream of freshly rendered training scenes with their prompts;
- :mod:`.components`: the small architectures of ``shapes-sd`` and ``shapes-sd3``;
- :mod:`.autoencoder`: VAE reconstruction training and latent statistics;
- :mod:`.objectives`: the denoising losses (SD epsilon prediction, SD3 flow matching);
- :mod:`.loop`: the shared optimisation loop (AdamW, EMA, periodic fp16 pipeline checkpoints);
- :mod:`.evaluate`: sampling held-out prompts and scoring them with the shapes judge;
- :mod:`.assemble`: a shipped folder from a checkpoint (optionally with a sharpened VAE decoder).
"""
