"""Stage 7, outcomes: learning from what happened. Each version judged on the outcomes of the leads
it served (``realised``), and a labelled history played back as it would have happened with what
sales were shown (``playback``).

May import: the foundation and every stage below it.
"""
