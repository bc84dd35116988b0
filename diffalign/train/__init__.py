"""Training: trainers, their configs, and the shared sampling kernels (``diffalign.train.samplers``)."""
