"""``rtl reproduce``: the whole study, each stage in turn, at the CLI's level (it drives every stage below it).

:mod:`~rtl_core.pipeline.run` holds the steps (data, pretraining, the grid, analysis, claims, advisor, report pages)
and the loop that runs those not yet done; :mod:`~rtl_core.pipeline.eta` the calibration and the time estimate it
prints after the data step.

Example::

    from rtl_core.pipeline import reproduce

    reproduce("smoke")  # reports/index.html
"""

from rtl_core.pipeline.run import report_dir_of, reproduce

__all__ = ["report_dir_of", "reproduce"]
