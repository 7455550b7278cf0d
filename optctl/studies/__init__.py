"""Studies built on the solve job: the sweep engine (:mod:`~optctl.studies.sweep`), its
analyses and reports (:mod:`~optctl.studies.horizons`, :mod:`~optctl.studies.report`), the
momentum and batch-size studies, and ``optctl reproduce``."""
