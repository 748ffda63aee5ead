//! Validated inputs of the users operations, parsed from JSON objects.
//!
//! Every parser collects one message per offending field and fails with a
//! `422 validation_failed` whose `details` are `{field: message}`: unknown
//! fields, read-only fields, wrong types, lengths, URLs, ranges, time zones,
//! list and map bounds.

use std::collections::BTreeMap;

use serde_json::{Map, Value};

use crate::error::{Error, Result};
use crate::model::{ConnectionStatus, UserPatch, Visibility};
use crate::store::ConnectionChange;

/// Longest name.
pub const MAX_NAME: usize = 200;
/// Longest title, company or location.
pub const MAX_SHORT_TEXT: usize = 200;
/// Longest industry.
pub const MAX_INDUSTRY: usize = 100;
/// Longest biography.
pub const MAX_BIO: usize = 5000;
/// Longest URL.
pub const MAX_URL: usize = 2048;
/// Most skills or interests.
pub const MAX_LIST_ITEMS: usize = 50;
/// Longest skill or interest.
pub const MAX_LIST_ITEM: usize = 50;
/// Most years of experience.
pub const MAX_EXPERIENCE: i64 = 80;
/// Most preference keys.
pub const MAX_PREFERENCES: usize = 100;
/// Longest preference key.
pub const MAX_PREFERENCE_KEY: usize = 64;
/// Largest preference value, as JSON.
pub const MAX_PREFERENCE_VALUE_BYTES: usize = 1024;
/// Largest preferences map, as JSON.
pub const MAX_PREFERENCES_BYTES: usize = 16 * 1024;
/// Longest connection type.
pub const MAX_CONNECTION_TYPE: usize = 50;
/// Longest external reference.
pub const MAX_EXTERNAL_REFERENCE: usize = 512;
/// Largest connection attributes object, as JSON.
pub const MAX_ATTRIBUTES_BYTES: usize = 4096;

/// The user fields an owner can hide with `privacy_settings`.
pub const HIDEABLE_FIELDS: &[&str] = &[
    "email",
    "email_verified",
    "name",
    "photo_url",
    "title",
    "company",
    "location",
    "industry",
    "linkedin_url",
    "experience_years",
    "provider",
    "bio",
    "timezone",
    "skills",
    "interests",
    "last_login",
    "last_active_at",
    "created_at",
    "updated_at",
];

/// Fields a profile update refuses as read-only.
const READ_ONLY: &[&str] = &[
    "id",
    "email",
    "email_verified",
    "provider",
    "roles",
    "social_accounts",
    "login_count",
    "last_login",
    "last_active_at",
    "created_at",
    "updated_at",
    "scheduled_purge_at",
];

/// Collects per-field messages.
#[derive(Debug, Default)]
struct Problems(Map<String, Value>);

impl Problems {
    fn add(&mut self, field: &str, message: impl Into<String>) {
        self.0
            .entry(field.to_owned())
            .or_insert_with(|| Value::String(message.into()));
    }

    fn finish(self) -> Result<()> {
        if self.0.is_empty() {
            Ok(())
        } else {
            Err(Error::validation(self.0))
        }
    }
}

/// A partial profile update (`PATCH`/`PUT /users/{id}`).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ProfileUpdate {
    /// The profile fields to change (and `privacy_settings`, replaced whole;
    /// `is_active`, admins only).
    pub patch: UserPatch,
    /// Preference changes, merged like `PUT /users/{id}/preferences`.
    pub preferences: Option<PreferenceChanges>,
    /// The names of the fields the body set, for the audit log.
    pub fields: Vec<String>,
}

impl ProfileUpdate {
    /// Parses and validates a profile update. `null` or `""` clears an
    /// optional text field; lists are replaced whole.
    pub fn from_json(body: &Map<String, Value>) -> Result<Self> {
        let mut p = Problems::default();
        let mut out = ProfileUpdate::default();
        for (key, value) in body {
            let k = key.as_str();
            match k {
                "name" => out.patch.name = text(&mut p, k, value, MAX_NAME, false),
                "title" | "company" | "location" => {
                    let v = text(&mut p, k, value, MAX_SHORT_TEXT, false);
                    match k {
                        "title" => out.patch.title = v,
                        "company" => out.patch.company = v,
                        _ => out.patch.location = v,
                    }
                }
                "industry" => out.patch.industry = text(&mut p, k, value, MAX_INDUSTRY, false),
                "bio" => out.patch.bio = text(&mut p, k, value, MAX_BIO, true),
                "photo_url" => out.patch.photo_url = web_url(&mut p, k, value),
                "linkedin_url" => out.patch.linkedin_url = web_url(&mut p, k, value),
                "timezone" => out.patch.timezone = timezone(&mut p, k, value),
                "experience_years" => out.patch.experience_years = experience(&mut p, k, value),
                "skills" => out.patch.skills = string_list(&mut p, k, value),
                "interests" => out.patch.interests = string_list(&mut p, k, value),
                "privacy_settings" => out.patch.privacy_settings = privacy_map(&mut p, k, value),
                "preferences" => out.preferences = preference_map(&mut p, k, value),
                "is_active" => match value {
                    Value::Bool(b) => out.patch.is_active = Some(*b),
                    _ => p.add(k, "must be true or false"),
                },
                _ if READ_ONLY.contains(&k) => p.add(k, "is read-only"),
                _ => p.add(k, "is not a known field"),
            }
            out.fields.push(key.clone());
        }
        p.finish()?;
        Ok(out)
    }

    /// Whether the update changes nothing.
    pub fn is_empty(&self) -> bool {
        self.patch == UserPatch::default() && self.preferences.is_none()
    }
}

/// Preference changes: keys to set and keys to delete (`null` values).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PreferenceChanges {
    /// Keys to set, with their values.
    pub set: BTreeMap<String, Value>,
    /// Keys to delete.
    pub remove: Vec<String>,
}

impl PreferenceChanges {
    /// Parses `{"preferences": {"key": value | null, ...}}`.
    pub fn from_json(body: &Map<String, Value>) -> Result<Self> {
        let mut p = Problems::default();
        let mut out = None;
        for (key, value) in body {
            match key.as_str() {
                "preferences" => out = preference_map(&mut p, key, value),
                k => p.add(k, "is not a known field"),
            }
        }
        if out.is_none() && !body.contains_key("preferences") {
            p.add("preferences", "is required");
        }
        p.finish()?;
        Ok(out.unwrap_or_default())
    }

    /// Applies the changes to `prefs`, refusing a result over the bounds.
    pub fn apply(&self, prefs: &mut BTreeMap<String, Value>) -> Result<()> {
        for key in &self.remove {
            prefs.remove(key);
        }
        for (key, value) in &self.set {
            prefs.insert(key.clone(), value.clone());
        }
        let mut p = Problems::default();
        if prefs.len() > MAX_PREFERENCES {
            p.add(
                "preferences",
                format!(
                    "at most {MAX_PREFERENCES} keys (this would make {})",
                    prefs.len()
                ),
            );
        } else if serde_json::to_vec(prefs).map_or(usize::MAX, |b| b.len()) > MAX_PREFERENCES_BYTES
        {
            p.add(
                "preferences",
                format!("at most {MAX_PREFERENCES_BYTES} bytes of JSON in all"),
            );
        }
        p.finish()
    }
}

/// Parses `{"privacy_settings": {"<user field>": "public" | "connections" | "private"}}`.
pub fn privacy_from_json(body: &Map<String, Value>) -> Result<BTreeMap<String, Visibility>> {
    let mut p = Problems::default();
    let mut out = None;
    for (key, value) in body {
        match key.as_str() {
            "privacy_settings" => out = privacy_map(&mut p, key, value),
            k => p.add(k, "is not a known field"),
        }
    }
    if !body.contains_key("privacy_settings") {
        p.add("privacy_settings", "is required");
    }
    p.finish()?;
    Ok(out.unwrap_or_default())
}

/// A new connection (`POST /users/{id}/connections`).
#[derive(Debug, Clone, PartialEq)]
pub struct NewConnection {
    /// Another user (exclusive with `external_reference`).
    pub target_user_id: Option<String>,
    /// Something outside this service (exclusive with `target_user_id`).
    pub external_reference: Option<String>,
    /// The kind of connection (`colleague`, `follow`, ...).
    pub connection_type: String,
    /// Requested status; `pending` when absent.
    pub status: Option<ConnectionStatus>,
    /// Free attributes (a JSON object).
    pub attributes: Value,
}

impl NewConnection {
    /// Parses and validates a new connection.
    pub fn from_json(body: &Map<String, Value>) -> Result<Self> {
        let mut p = Problems::default();
        let mut target = None;
        let mut external = None;
        let mut kind = None;
        let mut status = None;
        let mut attributes = Value::Object(Map::new());
        for (key, value) in body {
            let k = key.as_str();
            match k {
                "target_user_id" => target = text(&mut p, k, value, 64, false).flatten(),
                "external_reference" => {
                    external = text(&mut p, k, value, MAX_EXTERNAL_REFERENCE, false).flatten()
                }
                "connection_type" => {
                    kind = text(&mut p, k, value, MAX_CONNECTION_TYPE, false).flatten()
                }
                "status" => status = connection_status(&mut p, k, value),
                "attributes" => {
                    if let Some(a) = connection_attributes(&mut p, k, value) {
                        attributes = a;
                    }
                }
                _ => p.add(k, "is not a known field"),
            }
        }
        match (&target, &external) {
            (Some(_), Some(_)) => p.add(
                "target_user_id",
                "give either target_user_id or external_reference, not both",
            ),
            (None, None) => p.add(
                "target_user_id",
                "give target_user_id or external_reference",
            ),
            _ => {}
        }
        if kind.is_none() {
            p.add("connection_type", "is required");
        }
        p.finish()?;
        Ok(Self {
            target_user_id: target,
            external_reference: external,
            connection_type: kind.unwrap_or_default(),
            status,
            attributes,
        })
    }
}

/// Parses a connection update: `{"status"}` and/or `{"attributes"}`.
pub fn connection_change_from_json(body: &Map<String, Value>) -> Result<ConnectionChange> {
    let mut p = Problems::default();
    let mut out = ConnectionChange::default();
    for (key, value) in body {
        let k = key.as_str();
        match k {
            "status" => out.status = connection_status(&mut p, k, value),
            "attributes" => out.attributes = connection_attributes(&mut p, k, value),
            _ => p.add(k, "is not a known field"),
        }
    }
    if body.is_empty() {
        p.add("status", "give status and/or attributes");
    }
    p.finish()?;
    Ok(out)
}

/// Whether `s` has control characters (newlines and tabs allowed when `multiline`).
fn has_control(s: &str, multiline: bool) -> bool {
    s.chars()
        .any(|c| c.is_control() && !(multiline && matches!(c, '\n' | '\r' | '\t')))
}

/// An optional text field: `Some(None)` clears it (`null` or blank).
#[allow(clippy::option_option)]
fn text(
    p: &mut Problems,
    field: &str,
    value: &Value,
    max: usize,
    multiline: bool,
) -> Option<Option<String>> {
    match value {
        Value::Null => Some(None),
        Value::String(s) => {
            let s = s.trim();
            if s.chars().count() > max {
                p.add(field, format!("must be at most {max} characters"));
                None
            } else if has_control(s, multiline) {
                p.add(field, "must not contain control characters");
                None
            } else if s.is_empty() {
                Some(None)
            } else {
                Some(Some(s.to_owned()))
            }
        }
        _ => {
            p.add(field, "must be a string or null");
            None
        }
    }
}

/// An absolute `http` or `https` URL with a host and no credentials.
#[allow(clippy::option_option)]
fn web_url(p: &mut Problems, field: &str, value: &Value) -> Option<Option<String>> {
    let s = text(p, field, value, MAX_URL, false)?;
    let Some(s) = s else { return Some(None) };
    match url::Url::parse(&s) {
        Ok(u)
            if matches!(u.scheme(), "http" | "https")
                && u.host_str().is_some_and(|h| !h.is_empty())
                && u.username().is_empty()
                && u.password().is_none() =>
        {
            Some(Some(s))
        }
        _ => {
            p.add(field, "must be an http:// or https:// URL");
            None
        }
    }
}

/// Whether `tz` looks like an IANA time zone name: `UTC`, or
/// `Area/Location[/Sub]` with a known area and name-like parts
/// (`Europe/Paris`, `America/Argentina/Buenos_Aires`, `Etc/GMT+5`).
///
/// A compact check rather than the whole database: it refuses what is not
/// shaped like a zone name, not a well-shaped name that does not exist.
pub fn is_iana_timezone(tz: &str) -> bool {
    const AREAS: &[&str] = &[
        "Africa",
        "America",
        "Antarctica",
        "Arctic",
        "Asia",
        "Atlantic",
        "Australia",
        "Europe",
        "Indian",
        "Pacific",
        "Etc",
    ];
    if matches!(tz, "UTC" | "GMT") {
        return true;
    }
    let parts: Vec<&str> = tz.split('/').collect();
    if !(2..=3).contains(&parts.len()) || !AREAS.contains(&parts[0]) {
        return false;
    }
    parts[1..].iter().all(|part| {
        let mut chars = part.chars();
        part.len() <= 32
            && chars.next().is_some_and(|c| c.is_ascii_uppercase())
            && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '+'))
    })
}

#[allow(clippy::option_option)]
fn timezone(p: &mut Problems, field: &str, value: &Value) -> Option<Option<String>> {
    let s = text(p, field, value, 64, false)?;
    match s {
        Some(tz) if !is_iana_timezone(&tz) => {
            p.add(
                field,
                "must be an IANA time zone name such as Europe/Paris or UTC",
            );
            None
        }
        other => Some(other),
    }
}

#[allow(clippy::option_option)]
fn experience(p: &mut Problems, field: &str, value: &Value) -> Option<Option<i32>> {
    match value {
        Value::Null => Some(None),
        Value::Number(n) => match n.as_i64() {
            Some(y) if (0..=MAX_EXPERIENCE).contains(&y) => i32::try_from(y).ok().map(Some),
            _ => {
                p.add(
                    field,
                    format!("must be a whole number from 0 to {MAX_EXPERIENCE}"),
                );
                None
            }
        },
        _ => {
            p.add(
                field,
                format!("must be a whole number from 0 to {MAX_EXPERIENCE} or null"),
            );
            None
        }
    }
}

/// A bounded list of bounded strings, trimmed, duplicates (ignoring case) dropped.
fn string_list(p: &mut Problems, field: &str, value: &Value) -> Option<Vec<String>> {
    let items = match value {
        Value::Null => return Some(Vec::new()),
        Value::Array(items) => items,
        _ => {
            p.add(field, "must be a list of strings");
            return None;
        }
    };
    if items.len() > MAX_LIST_ITEMS {
        p.add(field, format!("must have at most {MAX_LIST_ITEMS} items"));
        return None;
    }
    let mut out: Vec<String> = Vec::with_capacity(items.len());
    for (i, item) in items.iter().enumerate() {
        let Some(s) = item.as_str().map(str::trim) else {
            p.add(field, format!("item {} must be a string", i + 1));
            return None;
        };
        if s.is_empty() || s.chars().count() > MAX_LIST_ITEM || has_control(s, false) {
            p.add(
                field,
                format!(
                    "item {} must be 1 to {MAX_LIST_ITEM} characters without control characters",
                    i + 1
                ),
            );
            return None;
        }
        if !out.iter().any(|o| o.to_lowercase() == s.to_lowercase()) {
            out.push(s.to_owned());
        }
    }
    Some(out)
}

fn privacy_map(
    p: &mut Problems,
    field: &str,
    value: &Value,
) -> Option<BTreeMap<String, Visibility>> {
    let Value::Object(map) = value else {
        p.add(
            field,
            "must be an object of field names to public, connections or private",
        );
        return None;
    };
    let mut out = BTreeMap::new();
    for (name, vis) in map {
        if !HIDEABLE_FIELDS.contains(&name.as_str()) {
            p.add(
                field,
                format!(
                    "`{}` is not a field whose visibility can be set",
                    clip(name)
                ),
            );
            return None;
        }
        let vis = match vis.as_str() {
            Some("public") => Visibility::Public,
            Some("connections") => Visibility::Connections,
            Some("private") => Visibility::Private,
            _ => {
                p.add(
                    field,
                    format!("`{name}` must be public, connections or private"),
                );
                return None;
            }
        };
        out.insert(name.clone(), vis);
    }
    Some(out)
}

fn preference_map(p: &mut Problems, field: &str, value: &Value) -> Option<PreferenceChanges> {
    let Value::Object(map) = value else {
        p.add(field, "must be an object of keys to values");
        return None;
    };
    if map.len() > MAX_PREFERENCES {
        p.add(field, format!("at most {MAX_PREFERENCES} keys"));
        return None;
    }
    let mut out = PreferenceChanges::default();
    for (key, v) in map {
        let key_ok = !key.is_empty()
            && key.chars().count() <= MAX_PREFERENCE_KEY
            && key
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.' | ':'));
        if !key_ok {
            p.add(
                field,
                format!(
                    "key `{}` must be 1 to {MAX_PREFERENCE_KEY} of A-Z a-z 0-9 _ - . :",
                    clip(key)
                ),
            );
            return None;
        }
        if v.is_null() {
            out.remove.push(key.clone());
            continue;
        }
        if serde_json::to_vec(v).map_or(usize::MAX, |b| b.len()) > MAX_PREFERENCE_VALUE_BYTES {
            p.add(
                field,
                format!("the value of `{key}` must be at most {MAX_PREFERENCE_VALUE_BYTES} bytes of JSON"),
            );
            return None;
        }
        out.set.insert(key.clone(), v.clone());
    }
    Some(out)
}

fn connection_status(p: &mut Problems, field: &str, value: &Value) -> Option<ConnectionStatus> {
    match value.as_str() {
        Some("pending") => Some(ConnectionStatus::Pending),
        Some("accepted") => Some(ConnectionStatus::Accepted),
        Some("blocked") => Some(ConnectionStatus::Blocked),
        _ => {
            p.add(field, "must be pending, accepted or blocked");
            None
        }
    }
}

fn connection_attributes(p: &mut Problems, field: &str, value: &Value) -> Option<Value> {
    match value {
        Value::Null => Some(Value::Object(Map::new())),
        Value::Object(_)
            if serde_json::to_vec(value).map_or(usize::MAX, |b| b.len())
                <= MAX_ATTRIBUTES_BYTES =>
        {
            Some(value.clone())
        }
        Value::Object(_) => {
            p.add(
                field,
                format!("must be at most {MAX_ATTRIBUTES_BYTES} bytes of JSON"),
            );
            None
        }
        _ => {
            p.add(field, "must be an object");
            None
        }
    }
}

/// At most 64 characters of untrusted text, for messages.
fn clip(s: &str) -> String {
    s.chars().take(64).collect()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use serde_json::json;

    fn obj(v: Value) -> Map<String, Value> {
        v.as_object().cloned().unwrap()
    }

    fn details(e: Error) -> Value {
        e.details().cloned().unwrap()
    }

    #[test]
    fn time_zones() {
        for ok in [
            "UTC",
            "Europe/Paris",
            "America/Argentina/Buenos_Aires",
            "America/Port-au-Prince",
            "Etc/GMT+5",
        ] {
            assert!(is_iana_timezone(ok), "{ok}");
        }
        for bad in [
            "",
            "utc",
            "Paris",
            "Europe/",
            "Mars/Olympus",
            "Europe/paris",
            "+02:00",
            "Europe/../x",
        ] {
            assert!(!is_iana_timezone(bad), "{bad}");
        }
    }

    #[test]
    fn profile_update_collects_every_problem() {
        let e = ProfileUpdate::from_json(&obj(json!({
            "email": "x@example.com",
            "nickname": "x",
            "photo_url": "javascript:alert(1)",
            "experience_years": 81,
            "skills": ["a", 3],
            "timezone": "Mars/Base",
        })))
        .unwrap_err();
        let d = details(e);
        for field in [
            "email",
            "nickname",
            "photo_url",
            "experience_years",
            "skills",
            "timezone",
        ] {
            assert!(d[field].is_string(), "{field}: {d}");
        }
    }

    #[test]
    fn profile_update_clears_and_dedupes() {
        let u = ProfileUpdate::from_json(&obj(json!({
            "title": "  ",
            "bio": null,
            "skills": ["Rust", "rust", " Go "],
        })))
        .unwrap();
        assert_eq!(u.patch.title, Some(None));
        assert_eq!(u.patch.bio, Some(None));
        assert_eq!(
            u.patch.skills,
            Some(vec!["Rust".to_owned(), "Go".to_owned()])
        );
    }

    #[test]
    fn preferences_merge_and_bounds() {
        let c = PreferenceChanges::from_json(&obj(json!({
            "preferences": {"theme": "dark", "old": null}
        })))
        .unwrap();
        let mut prefs = BTreeMap::from([("old".to_owned(), json!(1))]);
        c.apply(&mut prefs).unwrap();
        assert_eq!(prefs, BTreeMap::from([("theme".to_owned(), json!("dark"))]));

        let mut full: BTreeMap<String, Value> = (0..MAX_PREFERENCES)
            .map(|i| (format!("k{i}"), json!(i)))
            .collect();
        assert!(c.apply(&mut full).is_err());
    }
}
