-- Meetinity Auth schema (SQLite). Timestamps are UTC text in the fixed
-- format YYYY-MM-DDTHH:MM:SS.ffffffZ, so text order is time order.
-- JSON fields (lists, maps) are JSON text.

CREATE TABLE users (
    -- Stable integer key for the full-text index (an INTEGER PRIMARY KEY
    -- is the rowid and survives VACUUM).
    rid                INTEGER PRIMARY KEY,
    id                 TEXT    NOT NULL UNIQUE,
    email              TEXT    NOT NULL COLLATE NOCASE,
    email_verified     INTEGER NOT NULL DEFAULT 0,
    name               TEXT    COLLATE NOCASE,
    photo_url          TEXT,
    title              TEXT,
    company            TEXT,
    location           TEXT    COLLATE NOCASE,
    industry           TEXT    COLLATE NOCASE,
    linkedin_url       TEXT,
    experience_years   INTEGER,
    provider           TEXT    NOT NULL,
    bio                TEXT,
    timezone           TEXT,
    skills             TEXT    NOT NULL DEFAULT '[]',
    interests          TEXT    NOT NULL DEFAULT '[]',
    is_active          INTEGER NOT NULL DEFAULT 1,
    privacy_settings   TEXT    NOT NULL DEFAULT '{}',
    preferences        TEXT    NOT NULL DEFAULT '{}',
    roles              TEXT    NOT NULL DEFAULT '[]',
    last_login         TEXT,
    last_active_at     TEXT,
    login_count        INTEGER NOT NULL DEFAULT 0,
    created_at         TEXT    NOT NULL,
    updated_at         TEXT    NOT NULL,
    erased_at          TEXT,
    scheduled_purge_at TEXT
);

-- Unique ignoring case (the column collates NOCASE).
CREATE UNIQUE INDEX users_email_key ON users (email);

-- Listing indexes, over active users only.
CREATE INDEX users_active_created_idx ON users (created_at, id)
    WHERE is_active = 1 AND erased_at IS NULL;
CREATE INDEX users_active_name_idx ON users (name, id)
    WHERE is_active = 1 AND erased_at IS NULL;
CREATE INDEX users_active_experience_idx ON users (experience_years, id)
    WHERE is_active = 1 AND erased_at IS NULL;
CREATE INDEX users_active_industry_idx ON users (industry)
    WHERE is_active = 1 AND erased_at IS NULL;
CREATE INDEX users_active_location_idx ON users (location)
    WHERE is_active = 1 AND erased_at IS NULL;
CREATE INDEX users_purge_idx ON users (scheduled_purge_at)
    WHERE scheduled_purge_at IS NOT NULL;

-- Full-text search over name, title, company, skills and bio (FTS5,
-- external content kept in sync by triggers).
CREATE VIRTUAL TABLE users_fts USING fts5(
    name, title, company, skills, bio,
    content = 'users',
    content_rowid = 'rid',
    tokenize = 'unicode61 remove_diacritics 2'
);

CREATE TRIGGER users_fts_ai AFTER INSERT ON users BEGIN
    INSERT INTO users_fts (rowid, name, title, company, skills, bio)
    VALUES (new.rid, new.name, new.title, new.company, new.skills, new.bio);
END;

CREATE TRIGGER users_fts_ad AFTER DELETE ON users BEGIN
    INSERT INTO users_fts (users_fts, rowid, name, title, company, skills, bio)
    VALUES ('delete', old.rid, old.name, old.title, old.company, old.skills, old.bio);
END;

CREATE TRIGGER users_fts_au AFTER UPDATE OF name, title, company, skills, bio ON users BEGIN
    INSERT INTO users_fts (users_fts, rowid, name, title, company, skills, bio)
    VALUES ('delete', old.rid, old.name, old.title, old.company, old.skills, old.bio);
    INSERT INTO users_fts (rowid, name, title, company, skills, bio)
    VALUES (new.rid, new.name, new.title, new.company, new.skills, new.bio);
END;

CREATE TABLE identities (
    provider       TEXT    NOT NULL,
    subject        TEXT    NOT NULL,
    user_id        TEXT    NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    email          TEXT,
    email_verified INTEGER NOT NULL DEFAULT 0,
    created_at     TEXT    NOT NULL,
    last_login_at  TEXT,
    PRIMARY KEY (provider, subject)
);
CREATE INDEX identities_user_idx ON identities (user_id);

CREATE TABLE password_credentials (
    user_id       TEXT NOT NULL PRIMARY KEY REFERENCES users (id) ON DELETE CASCADE,
    password_hash TEXT NOT NULL,
    created_at    TEXT NOT NULL,
    updated_at    TEXT NOT NULL
);

CREATE TABLE sessions (
    id           TEXT NOT NULL PRIMARY KEY,
    user_id      TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    method       TEXT NOT NULL,
    created_at   TEXT NOT NULL,
    last_used_at TEXT NOT NULL,
    expires_at   TEXT NOT NULL,
    ip           TEXT,
    user_agent   TEXT,
    revoked_at   TEXT
);
CREATE INDEX sessions_user_idx ON sessions (user_id, created_at);

CREATE TABLE refresh_tokens (
    token_hash       TEXT NOT NULL PRIMARY KEY,
    session_id       TEXT NOT NULL REFERENCES sessions (id) ON DELETE CASCADE,
    created_at       TEXT NOT NULL,
    rotated_at       TEXT,
    successor_sealed TEXT
);
CREATE INDEX refresh_tokens_session_idx ON refresh_tokens (session_id);

CREATE TABLE one_time_tokens (
    hash       TEXT NOT NULL PRIMARY KEY,
    purpose    TEXT NOT NULL,
    user_id    TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    expires_at TEXT NOT NULL,
    used_at    TEXT
);
CREATE INDEX one_time_tokens_user_idx ON one_time_tokens (user_id);

CREATE TABLE connections (
    id                 TEXT NOT NULL PRIMARY KEY,
    user_id            TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    target_user_id     TEXT REFERENCES users (id) ON DELETE CASCADE,
    external_reference TEXT,
    connection_type    TEXT NOT NULL,
    status             TEXT NOT NULL DEFAULT 'pending'
        CHECK (status IN ('pending', 'accepted', 'blocked')),
    attributes         TEXT NOT NULL DEFAULT '{}',
    created_at         TEXT NOT NULL,
    updated_at         TEXT NOT NULL,
    CHECK (target_user_id IS NOT NULL OR external_reference IS NOT NULL),
    UNIQUE (user_id, target_user_id),
    UNIQUE (user_id, external_reference)
);
CREATE INDEX connections_target_idx ON connections (target_user_id);

-- No foreign key to users: the audit trail outlives the account.
CREATE TABLE audit_events (
    id         TEXT NOT NULL PRIMARY KEY,
    event      TEXT NOT NULL,
    actor_id   TEXT,
    user_id    TEXT,
    outcome    TEXT NOT NULL,
    method     TEXT,
    detail     TEXT,
    ip         TEXT,
    user_agent TEXT,
    created_at TEXT NOT NULL
);
CREATE INDEX audit_events_user_idx ON audit_events (user_id, created_at);
CREATE INDEX audit_events_created_idx ON audit_events (created_at);
CREATE INDEX audit_events_event_idx ON audit_events (event, created_at);
