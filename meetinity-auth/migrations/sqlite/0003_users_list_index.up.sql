-- PostgreSQL-only tuning (a covering index for listings by industry and
-- location with 1,000,000 users); nothing to do for SQLite. The file keeps
-- the two migration histories numbered alike.
SELECT 1;
