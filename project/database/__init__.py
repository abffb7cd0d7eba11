"""Django's PostgreSQL backend, with a connection pool that drops every broken connection at once."""
