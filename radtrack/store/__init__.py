"""The live state and where it is kept: the memory index (``index.py``), the Store interface
(``base.py``) and its two backends, SQLite (the embedded default) and PostgreSQL (``pg/``)."""
