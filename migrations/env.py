"""Alembic environment: the URL comes from the config (set by db.session) or CONVLENS_DATABASE_URL."""

from alembic import context

from convlens.db.models import Base
from convlens.db.session import database_url, engine

config = context.config
url = config.get_main_option("sqlalchemy.url") or database_url()

with engine(url).connect() as connection:
    context.configure(connection=connection, target_metadata=Base.metadata,
                      render_as_batch=connection.dialect.name == "sqlite", compare_type=True)
    with context.begin_transaction():
        context.run_migrations()
    connection.commit()
