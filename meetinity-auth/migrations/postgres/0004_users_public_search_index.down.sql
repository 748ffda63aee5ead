DROP STATISTICS IF EXISTS users_search_privacy_stats;
DROP INDEX IF EXISTS users_public_search_idx;
