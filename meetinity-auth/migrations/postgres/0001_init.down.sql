DROP TABLE IF EXISTS audit_events;
DROP TABLE IF EXISTS connections;
DROP TABLE IF EXISTS one_time_tokens;
DROP TABLE IF EXISTS refresh_tokens;
DROP TABLE IF EXISTS sessions;
DROP TABLE IF EXISTS password_credentials;
DROP TABLE IF EXISTS identities;
DROP TABLE IF EXISTS users;
