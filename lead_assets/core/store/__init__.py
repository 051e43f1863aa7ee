"""Stage 1, store: where state lives. The data home and its layout (``home``), the warehouse of
Parquet day files (``warehouse``) and the MLflow experiments under the home (``experiments``).

May import: the foundation (``core.schema``, ``core.clock``) only.
"""
