//! # meetinity-auth
//!
//! Embeddable authentication for Rust services: sign-in with Google,
//! LinkedIn or any OpenID Connect issuer, email + password accounts, JWT
//! access tokens with rotating refresh tokens and immediate revocation, and
//! user profiles — behind one [`AuthService`] trait with pluggable stores
//! (SQLite, PostgreSQL), caches (moka, Redis), identity providers, key sets,
//! mailer and clock.
#![cfg_attr(docsrs, feature(doc_cfg))]
#![warn(missing_docs)]

pub mod cache;
pub mod clock;
pub mod config;
pub mod error;
pub mod flow;
#[cfg(feature = "http")]
#[cfg_attr(docsrs, doc(cfg(feature = "http")))]
pub mod http;
pub mod mail;
pub mod model;
pub mod password;
pub mod provider;
pub mod secret;
pub mod service;
pub mod store;
pub mod token;

pub use config::Config;
pub use error::{Error, ErrorKind, Result};

pub use service::AuthService;
