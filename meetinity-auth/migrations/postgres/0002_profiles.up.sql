-- Connections between two users are unique per unordered pair: A -> B and
-- B -> A cannot both exist, so both users see the same one.
CREATE UNIQUE INDEX connections_pair_key
    ON connections (LEAST(user_id, target_user_id), GREATEST(user_id, target_user_id))
    WHERE target_user_id IS NOT NULL;

-- Export and erasure find the events a user acted in.
CREATE INDEX audit_events_actor_idx ON audit_events (actor_id, created_at);
