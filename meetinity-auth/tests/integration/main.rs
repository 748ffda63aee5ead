//! The one integration-test binary of `meetinity-auth`: every module runs
//! against real backends (SQLite files, PostgreSQL, Redis, an SMTP server and
//! an OpenID provider on loopback).
//!
//! PostgreSQL and Redis are never skipped: set `TEST_DATABASE_URL` /
//! `TEST_REDIS_URL` (defaults `postgres://postgres@127.0.0.1:5432/test`,
//! `redis://127.0.0.1:6379/0`); an unreachable service fails the tests.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod cache;
mod fake_idp;
mod mail;
mod oidc;
mod password;
mod smtp_sink;
mod store;
mod support;
mod token;
