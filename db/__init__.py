"""The results database: SQLAlchemy 2 models, sessions and migrations checks."""
