-- See 0004_users_public_search_index.up.sql: nothing to undo for SQLite.
SELECT 1;
