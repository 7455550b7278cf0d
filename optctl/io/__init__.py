"""Files: configs (run, sweep, fit), run and fit folders, schedule tables, loss curves.

Every write is atomic (:mod:`~optctl.io.files`). Configs are read strictly
(:mod:`~optctl.io.yamlfile`).
"""
