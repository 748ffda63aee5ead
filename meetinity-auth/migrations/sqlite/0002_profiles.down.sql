DROP INDEX IF EXISTS audit_events_actor_idx;
DROP INDEX IF EXISTS connections_pair_key;
