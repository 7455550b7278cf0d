"""Baselines (MODEL.md §4): the schedule families people use, tuned under the same model.

:mod:`~optctl.baselines.families` names the families and rebuilds a schedule from saved
parameters; :mod:`~optctl.baselines.tune` tunes them.
"""
