"""Stage 3, leads: rows of a day. Landed files to one row per lead (``landed``), outcomes attached
as labels (``labels``), the case study's cleaning rules (``cleaning``), the model's input table
(``features``), the data-quality rules run with Great Expectations (``quality``), what drives
conversion (``insights``) and the synthetic lead generator (``synth``).

May import: the foundation, ``store`` and ``inbox``.
"""
