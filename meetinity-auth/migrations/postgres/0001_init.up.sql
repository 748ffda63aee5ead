-- Meetinity Auth schema (PostgreSQL). Timestamps are timestamptz (UTC);
-- lists and maps are jsonb.

CREATE TABLE users (
    id                 TEXT        NOT NULL PRIMARY KEY,
    email              TEXT        NOT NULL,
    email_verified     BOOLEAN     NOT NULL DEFAULT FALSE,
    name               TEXT,
    photo_url          TEXT,
    title              TEXT,
    company            TEXT,
    location           TEXT,
    industry           TEXT,
    linkedin_url       TEXT,
    experience_years   INTEGER,
    provider           TEXT        NOT NULL,
    bio                TEXT,
    timezone           TEXT,
    skills             JSONB       NOT NULL DEFAULT '[]'::jsonb,
    interests          JSONB       NOT NULL DEFAULT '[]'::jsonb,
    is_active          BOOLEAN     NOT NULL DEFAULT TRUE,
    privacy_settings   JSONB       NOT NULL DEFAULT '{}'::jsonb,
    preferences        JSONB       NOT NULL DEFAULT '{}'::jsonb,
    roles              JSONB       NOT NULL DEFAULT '[]'::jsonb,
    last_login         TIMESTAMPTZ,
    last_active_at     TIMESTAMPTZ,
    login_count        BIGINT      NOT NULL DEFAULT 0,
    created_at         TIMESTAMPTZ NOT NULL,
    updated_at         TIMESTAMPTZ NOT NULL,
    erased_at          TIMESTAMPTZ,
    scheduled_purge_at TIMESTAMPTZ,
    -- Full-text document over name, title, company, bio and skills.
    search             TSVECTOR GENERATED ALWAYS AS (
        to_tsvector('simple'::regconfig,
            coalesce(name, '') || ' ' || coalesce(title, '') || ' ' ||
            coalesce(company, '') || ' ' || coalesce(bio, ''))
        || jsonb_to_tsvector('simple'::regconfig, skills, '["string"]'::jsonb)
    ) STORED
);

-- Unique ignoring case.
CREATE UNIQUE INDEX users_email_lower_key ON users (lower(email));

-- Listing indexes, over active users only.
CREATE INDEX users_active_created_idx ON users (created_at, id)
    WHERE is_active AND erased_at IS NULL;
CREATE INDEX users_active_name_idx ON users (lower(name), id)
    WHERE is_active AND erased_at IS NULL;
CREATE INDEX users_active_experience_idx ON users (experience_years, id)
    WHERE is_active AND erased_at IS NULL;
CREATE INDEX users_active_industry_idx ON users (lower(industry))
    WHERE is_active AND erased_at IS NULL;
CREATE INDEX users_active_location_idx ON users (lower(location))
    WHERE is_active AND erased_at IS NULL;
CREATE INDEX users_search_idx ON users USING GIN (search);
-- Skills filter: lower-cased skills, matched by containment.
CREATE INDEX users_skills_lower_idx ON users USING GIN ((lower(skills::text)::jsonb) jsonb_path_ops);
CREATE INDEX users_purge_idx ON users (scheduled_purge_at)
    WHERE scheduled_purge_at IS NOT NULL;

CREATE TABLE identities (
    provider       TEXT        NOT NULL,
    subject        TEXT        NOT NULL,
    user_id        TEXT        NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    email          TEXT,
    email_verified BOOLEAN     NOT NULL DEFAULT FALSE,
    created_at     TIMESTAMPTZ NOT NULL,
    last_login_at  TIMESTAMPTZ,
    PRIMARY KEY (provider, subject)
);
CREATE INDEX identities_user_idx ON identities (user_id);

CREATE TABLE password_credentials (
    user_id       TEXT        NOT NULL PRIMARY KEY REFERENCES users (id) ON DELETE CASCADE,
    password_hash TEXT        NOT NULL,
    created_at    TIMESTAMPTZ NOT NULL,
    updated_at    TIMESTAMPTZ NOT NULL
);

CREATE TABLE sessions (
    id           TEXT        NOT NULL PRIMARY KEY,
    user_id      TEXT        NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    method       TEXT        NOT NULL,
    created_at   TIMESTAMPTZ NOT NULL,
    last_used_at TIMESTAMPTZ NOT NULL,
    expires_at   TIMESTAMPTZ NOT NULL,
    ip           TEXT,
    user_agent   TEXT,
    revoked_at   TIMESTAMPTZ
);
CREATE INDEX sessions_user_idx ON sessions (user_id, created_at);

CREATE TABLE refresh_tokens (
    token_hash       TEXT        NOT NULL PRIMARY KEY,
    session_id       TEXT        NOT NULL REFERENCES sessions (id) ON DELETE CASCADE,
    created_at       TIMESTAMPTZ NOT NULL,
    rotated_at       TIMESTAMPTZ,
    successor_sealed TEXT
);
CREATE INDEX refresh_tokens_session_idx ON refresh_tokens (session_id);

CREATE TABLE one_time_tokens (
    hash       TEXT        NOT NULL PRIMARY KEY,
    purpose    TEXT        NOT NULL,
    user_id    TEXT        NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    expires_at TIMESTAMPTZ NOT NULL,
    used_at    TIMESTAMPTZ
);
CREATE INDEX one_time_tokens_user_idx ON one_time_tokens (user_id);

CREATE TABLE connections (
    id                 TEXT        NOT NULL PRIMARY KEY,
    user_id            TEXT        NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    target_user_id     TEXT        REFERENCES users (id) ON DELETE CASCADE,
    external_reference TEXT,
    connection_type    TEXT        NOT NULL,
    status             TEXT        NOT NULL DEFAULT 'pending'
        CHECK (status IN ('pending', 'accepted', 'blocked')),
    attributes         JSONB       NOT NULL DEFAULT '{}'::jsonb,
    created_at         TIMESTAMPTZ NOT NULL,
    updated_at         TIMESTAMPTZ NOT NULL,
    CHECK (target_user_id IS NOT NULL OR external_reference IS NOT NULL),
    UNIQUE (user_id, target_user_id),
    UNIQUE (user_id, external_reference)
);
CREATE INDEX connections_target_idx ON connections (target_user_id);

-- No foreign key to users: the audit trail outlives the account.
CREATE TABLE audit_events (
    id         TEXT        NOT NULL PRIMARY KEY,
    event      TEXT        NOT NULL,
    actor_id   TEXT,
    user_id    TEXT,
    outcome    TEXT        NOT NULL,
    method     TEXT,
    detail     TEXT,
    ip         TEXT,
    user_agent TEXT,
    created_at TIMESTAMPTZ NOT NULL
);
CREATE INDEX audit_events_user_idx ON audit_events (user_id, created_at);
CREATE INDEX audit_events_created_idx ON audit_events (created_at);
CREATE INDEX audit_events_event_idx ON audit_events (event, created_at);
