"""Evaluation jobs and their reports.

- :mod:`diffalign.eval.geneval`: GenEval's protocol with a pluggable detector (the pure rule engine
  ``judge``, detectors, the CLIP colour classifier, the folder job, ``diffalign eval geneval``);
- :mod:`diffalign.eval.hps_benchmark`: the HPSv2 benchmark over the four style prompt files
  (``diffalign eval hps``);
- :mod:`diffalign.eval.compare`: win-rate of one pipeline (+LoRA) over another per reward, with a
  Wilson interval (``diffalign eval compare``);
- :mod:`diffalign.pipelines.generation`: loading ``PIPE[+LORA]`` and seeded generation shared by all jobs;
- :mod:`diffalign.eval.report`: self-contained HTML reports and Markdown summaries.
"""
