"""The GenEval evaluation job: generate (or read) images in GenEval's folder layout, judge them with
:class:`diffalign.geneval.evaluator.GenEvalEvaluator`, write ``results.jsonl``, ``summary.json`` and
an HTML report. The rule engine, vocabulary, metadata and detectors it uses live one layer down in
:mod:`diffalign.geneval`, shared with the shapes judge and the GenEval reward.

- :mod:`.layout`: GenEval's ``<index>/samples/<k>.png`` folder layout;
- :mod:`.job`: the job itself (:func:`~.job.run_geneval`);
- :mod:`.report`: its HTML report; :mod:`.command`: ``diffalign eval geneval``.
"""
