"""Stage 5, scoring: scores and where they go. Batch scores with buckets and reasons (``batch``),
one lead online as the batch scores it (``online``), what sales were shown per version
(``shown``), drift of a scored day against the holdout (``drift``), a day's calling capacity
(``capacity``) and the rows a CRM sync imports (``crm``).

May import: the foundation and the stages below it (``store``, ``inbox``, ``leads``, ``model``).
"""
