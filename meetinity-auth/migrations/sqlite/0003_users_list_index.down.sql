-- See 0003_users_list_index.up.sql: nothing to undo for SQLite.
SELECT 1;
