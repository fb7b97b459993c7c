"""Evaluation protocols, one file each, registered in `jvssl.registry.EVALUATORS` and found by name.

`jvssl.evaluate.common` runs the ones a config names on what a method exposes for evaluation.
"""
