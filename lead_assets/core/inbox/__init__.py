"""Stage 2, inbox: files in. Bytes to records (``reader``), cheap sniffing and full parsing of lead
and outcome files with every row rule (``parsing``), and the ledger that moves each inbox file to
exactly one place, landing or quarantine (``ledger``).

May import: the foundation and ``store``.
"""
