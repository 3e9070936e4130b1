//! Persistence for the manager: SQLite and PostgreSQL through sqlx, migrations, typed queries.
