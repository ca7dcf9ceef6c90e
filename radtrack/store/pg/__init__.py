"""PostgreSQL persistence for several radtrack nodes sharing one database (issue 13): the
schema and its migrations, and the change feed that carries each node's commits to the others.

Needs the ``postgresql`` extra (asyncpg); nothing imports this package unless the PostgreSQL
backend is chosen.
"""
