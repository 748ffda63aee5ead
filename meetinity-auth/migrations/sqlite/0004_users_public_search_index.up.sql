-- PostgreSQL-only tuning (a partial full-text index for searches by callers
-- who are not admins, and statistics on the privacy expressions); nothing to
-- do for SQLite. The file keeps the two migration histories numbered alike.
SELECT 1;
