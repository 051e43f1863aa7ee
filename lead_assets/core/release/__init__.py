"""Stage 6, release: MLflow. Log a training, register the version with the pyfunc that serves it
(which carries the scoring code), move and roll back the champion alias (``registry``).

May import: the foundation and every stage below it (``scoring`` included: the pyfunc scores).
"""
