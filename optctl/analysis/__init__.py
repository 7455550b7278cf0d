"""Analysis of solved schedules: phase labels (:mod:`~optctl.analysis.classify`) and
scaling-law fits (:mod:`~optctl.analysis.scaling`). The theory values are in
:mod:`optctl.theory`."""
