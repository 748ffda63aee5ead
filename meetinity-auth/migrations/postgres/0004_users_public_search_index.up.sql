-- Search by callers who are not admins (issue 5, 1,000,000 users).
--
-- Such a search only returns users whose searched fields (name, title,
-- company, skills, bio) are all public. This partial index holds exactly
-- those active users: its predicate is the condition the query adds,
-- written the same way (SEARCHED_FIELDS_PUBLIC in
-- src/store/postgres_profile.rs), so the planner proves that the query
-- implies it and no row needs a privacy check after the index. Admin
-- searches keep users_search_idx.
CREATE INDEX IF NOT EXISTS users_public_search_idx ON users USING GIN (search)
    WHERE is_active AND erased_at IS NULL
      AND coalesce(privacy_settings ->> 'name', 'public') = 'public'
      AND coalesce(privacy_settings ->> 'title', 'public') = 'public'
      AND coalesce(privacy_settings ->> 'company', 'public') = 'public'
      AND coalesce(privacy_settings ->> 'skills', 'public') = 'public'
      AND coalesce(privacy_settings ->> 'bio', 'public') = 'public';

-- Without statistics on these expressions the planner takes each for a
-- 0.5% filter and all five for one row in a million: it then sorted every
-- match of a common word (`q=rust`, 82,813 users) to return 20 of them.
-- With them it estimates the matches right and walks the created_at index
-- instead (measured in benches/users-1m/README.md). Needs PostgreSQL 14.
CREATE STATISTICS IF NOT EXISTS users_search_privacy_stats ON
    (coalesce(privacy_settings ->> 'name', 'public')),
    (coalesce(privacy_settings ->> 'title', 'public')),
    (coalesce(privacy_settings ->> 'company', 'public')),
    (coalesce(privacy_settings ->> 'skills', 'public')),
    (coalesce(privacy_settings ->> 'bio', 'public'))
    FROM users;
ANALYZE users;
