"""What the report notebooks show: one module per page family, each a set of functions that return a table
(pandas or HTML), a figure or a sentence; cells call them and hold no logic.

- :mod:`~rtl_core.report.views.data`: 00 · Data (the study's own pools and tasks, the demo pack);
- :mod:`~rtl_core.report.views.pretrain`: 10 · Pretraining (encoders, loss and throughput curves);
- :mod:`~rtl_core.report.views.protocol`: the protocol pages 20-22 and 23 · Segmentation (summaries, per-seed
  figures, pairwise comparisons, learning curves);
- :mod:`~rtl_core.report.views.features`: 30 · Feature space (CKA, UMAP, separability, probes, overlaps);
- :mod:`~rtl_core.report.views.advisor`: 40 · Advisor (scores, recommendations, validation);
- :mod:`~rtl_core.report.views.verdicts`: the claims and the study's own questions on 90 · Summary and the index;
- :mod:`~rtl_core.report.views.summary`: 90 · Summary's variance components;
- :mod:`~rtl_core.report.views.tables`: a table as a reader should see it (every page).

The names of the protocol, verdict, summary and table modules are re-exported here (``views.protocol_stats(…)``);
the other families are reached by their module (``views.pretrain.curves_figure(study)``, whose name the protocol
pages' learning curves share).
"""

from rtl_core.report.views import advisor, data, features, pretrain, protocol, summary, tables, verdicts
from rtl_core.report.views.data import (
    demo_data_intro,
    demo_data_used,
    own_data_samples,
    own_data_section,
    study_has_own_data,
)
from rtl_core.report.views.protocol import (
    PROTOCOL_PAGES,
    claims,
    curves,
    curves_figure,
    fraction_figure,
    labels_figure,
    load,
    main_protocol,
    no_runs,
    protocol_figure,
    protocol_page,
    protocol_stats,
    protocol_summary,
    segmentation_tasks,
)
from rtl_core.report.views.summary import variance_note, variance_table
from rtl_core.report.views.tables import table
from rtl_core.report.views.verdicts import (
    OWN_QUESTION,
    not_run_note,
    overview_details,
    split_claims,
    split_questions,
    verdict_table,
    without_paper,
)

__all__ = [
    "OWN_QUESTION",
    "PROTOCOL_PAGES",
    "advisor",
    "claims",
    "curves",
    "curves_figure",
    "data",
    "demo_data_intro",
    "demo_data_used",
    "features",
    "fraction_figure",
    "labels_figure",
    "load",
    "main_protocol",
    "no_runs",
    "not_run_note",
    "overview_details",
    "own_data_samples",
    "own_data_section",
    "pretrain",
    "protocol",
    "protocol_figure",
    "protocol_page",
    "protocol_stats",
    "protocol_summary",
    "segmentation_tasks",
    "split_claims",
    "split_questions",
    "study_has_own_data",
    "summary",
    "table",
    "tables",
    "variance_note",
    "variance_table",
    "verdict_table",
    "verdicts",
    "without_paper",
]
