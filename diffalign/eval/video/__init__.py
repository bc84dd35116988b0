"""``diffalign eval video``: the GenEval-style job on moving-shapes prompts with the temporal judge."""
