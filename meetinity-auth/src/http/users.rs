//! The Users routes of the contract and `GET /admin/audit`.
//!
//! Shape first (unknown path `404`, wrong method `405` with `Allow`), then
//! the Bearer token (`401`), then the service, which applies the
//! authorization rules (`403`), existence (`404`) and validation (`422`).
//! A bad query value is `400` naming the parameter, in the message and in
//! `details` (`{"<parameter>": "<what is wrong>"}`).

use chrono::{DateTime, Utc};
use http::{Method, Request, StatusCode};
use serde_json::{json, Map, Value};

use super::{Api, Reply};
use crate::error::{Error, ErrorKind, Result};
use crate::model::{AuditQuery, RequestContext, UserQuery, UserSort};
use crate::service::{
    connection_change_from_json, privacy_from_json, NewConnection, PreferenceChanges, ProfileUpdate,
};

/// Page size when none is asked for.
const DEFAULT_PER_PAGE: u32 = 20;
/// Largest page of users or connections; larger requests are clamped.
const MAX_PER_PAGE: u32 = 100;
/// Largest page of audit events; larger requests are clamped.
const MAX_AUDIT_PER_PAGE: u32 = 1000;
/// Highest page number.
const MAX_PAGE: u32 = 100_000;
/// Most skills in one filter.
const MAX_SKILL_FILTERS: usize = 10;

/// Which route a path is, with the methods it allows.
enum Route<'a> {
    List,
    Search,
    User(&'a str),
    Preferences(&'a str),
    Privacy(&'a str),
    SocialAccounts(&'a str),
    SocialAccount(&'a str, &'a str),
    Connections(&'a str),
    Connection(&'a str, &'a str),
    Sessions(&'a str),
    Session(&'a str, &'a str),
    Export(&'a str),
    Erase(&'a str),
    Audit,
}

impl<'a> Route<'a> {
    fn of(segs: &[&'a str]) -> Option<Self> {
        let ok = |s: &&str| !s.is_empty();
        Some(match segs {
            ["users"] => Self::List,
            ["users", "search"] => Self::Search,
            ["users", id] if ok(id) => Self::User(id),
            ["users", id, "preferences"] if ok(id) => Self::Preferences(id),
            ["users", id, "privacy"] if ok(id) => Self::Privacy(id),
            ["users", id, "social-accounts"] if ok(id) => Self::SocialAccounts(id),
            ["users", id, "social-accounts", p] if ok(id) && ok(p) => Self::SocialAccount(id, p),
            ["users", id, "connections"] if ok(id) => Self::Connections(id),
            ["users", id, "connections", c] if ok(id) && ok(c) => Self::Connection(id, c),
            ["users", id, "sessions"] if ok(id) => Self::Sessions(id),
            ["users", id, "sessions", s] if ok(id) && ok(s) => Self::Session(id, s),
            ["users", id, "export"] if ok(id) => Self::Export(id),
            ["users", id, "erase"] if ok(id) => Self::Erase(id),
            ["admin", "audit"] => Self::Audit,
            _ => return None,
        })
    }

    fn allow(&self) -> &'static str {
        match self {
            Self::List | Self::Search | Self::SocialAccounts(_) | Self::Sessions(_) => "GET",
            Self::Export(_) | Self::Audit => "GET",
            Self::User(_) => "GET, PATCH, PUT, DELETE",
            Self::Preferences(_) | Self::Privacy(_) => "PUT",
            Self::SocialAccount(..) | Self::Session(..) => "DELETE",
            Self::Connections(_) => "GET, POST",
            Self::Connection(..) => "PATCH, DELETE",
            Self::Erase(_) => "POST",
        }
    }
}

/// Serves `/users...` and `/admin/...`.
pub(super) async fn route<B>(
    api: &Api,
    req: Request<B>,
    segs: &[&str],
    ctx: RequestContext,
) -> Result<Reply>
where
    B: http_body::Body + Send,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let route = Route::of(segs).ok_or_else(|| Error::new(ErrorKind::NotFound))?;
    let m = if req.method() == Method::HEAD {
        Method::GET
    } else {
        req.method().clone()
    };
    if !route.allow().split(", ").any(|a| a == m.as_str()) {
        return Err(
            Error::new(ErrorKind::MethodNotAllowed).with_details(json!({ "allow": route.allow() }))
        );
    }
    let claims = api.authed(req.headers()).await?;
    let svc = &api.service;
    let params = Params::of(req.uri());
    let ok = |body: Value| Ok(Reply::json(StatusCode::OK, body));
    let no_content = || Ok(Reply::empty(StatusCode::NO_CONTENT));
    match route {
        Route::List | Route::Search => {
            let search = matches!(route, Route::Search);
            let (query, page, per_page) = user_query(&params, search)?;
            let found = svc.list_users(&claims, &query).await?;
            let mut body = json!({
                "items": found.items,
                "page": page,
                "per_page": per_page,
                "total": found.total,
                "total_exact": found.total_exact,
            });
            if search {
                body["query"] = json!(query.q);
            }
            ok(body)
        }
        Route::User(id) => match m {
            Method::GET => ok(json!({ "user": svc.get_user(&claims, id).await? })),
            Method::DELETE => {
                svc.deactivate_user(&claims, id, &ctx).await?;
                no_content()
            }
            _ => {
                let body = object(api, req).await?;
                let update = ProfileUpdate::from_json(&body)?;
                let user = svc.update_user(&claims, id, &update, &ctx).await?;
                ok(json!({ "user": user }))
            }
        },
        Route::Preferences(id) => {
            let changes = PreferenceChanges::from_json(&object(api, req).await?)?;
            let prefs = svc.update_preferences(&claims, id, &changes, &ctx).await?;
            ok(json!({ "preferences": prefs }))
        }
        Route::Privacy(id) => {
            let settings = privacy_from_json(&object(api, req).await?)?;
            let stored = svc.update_privacy(&claims, id, &settings, &ctx).await?;
            ok(json!({ "privacy_settings": stored }))
        }
        Route::SocialAccounts(id) => {
            ok(json!({ "items": svc.social_accounts(&claims, id).await? }))
        }
        Route::SocialAccount(id, provider) => {
            svc.unlink_social_account(&claims, id, provider, &ctx)
                .await?;
            no_content()
        }
        Route::Connections(id) if m == Method::GET => {
            let (page, per_page) = paging(&params, MAX_PER_PAGE)?;
            let found = svc.connections(&claims, id, page, per_page).await?;
            ok(json!({
                "items": found.items,
                "page": page,
                "per_page": per_page,
                "total": found.total,
            }))
        }
        Route::Connections(id) => {
            let new = NewConnection::from_json(&object(api, req).await?)?;
            let created = svc.create_connection(&claims, id, &new, &ctx).await?;
            Ok(Reply::json(
                StatusCode::CREATED,
                json!({ "connection": created }),
            ))
        }
        Route::Connection(id, cid) if m == Method::DELETE => {
            svc.delete_connection(&claims, id, cid, &ctx).await?;
            no_content()
        }
        Route::Connection(id, cid) => {
            let change = connection_change_from_json(&object(api, req).await?)?;
            let updated = svc
                .update_connection(&claims, id, cid, &change, &ctx)
                .await?;
            ok(json!({ "connection": updated }))
        }
        Route::Sessions(id) => ok(json!({ "items": svc.sessions(&claims, id).await? })),
        Route::Session(id, sid) => {
            svc.revoke_session(&claims, id, sid, &ctx).await?;
            no_content()
        }
        Route::Export(id) => {
            let export = svc.export_user(&claims, id, &ctx).await?;
            ok(serde_json::to_value(export).map_err(Error::internal)?)
        }
        Route::Erase(id) => {
            let erased = svc.erase_user(&claims, id, &ctx).await?;
            // `{"user", "scheduled_purge_at"}`, the date also inside the user.
            let mut body = serde_json::to_value(&erased).map_err(Error::internal)?;
            body["user"]["scheduled_purge_at"] = body["scheduled_purge_at"].clone();
            ok(body)
        }
        Route::Audit => {
            // Admins only: refuse others before their parameters matter.
            if !claims.roles.iter().any(|r| r == "admin") {
                return Err(Error::new(ErrorKind::Forbidden));
            }
            let query = audit_query(&params)?;
            let (page, per_page) = (query.page, query.per_page);
            let found = svc.audit_events(&claims, &query).await?;
            ok(json!({
                "items": found.items,
                "page": page,
                "per_page": per_page,
                "total": found.total,
            }))
        }
    }
}

/// The JSON object body.
async fn object<B>(api: &Api, req: Request<B>) -> Result<Map<String, Value>>
where
    B: http_body::Body + Send,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    match api.json_value(req).await? {
        Value::Object(map) => Ok(map),
        _ => Err(Error::new(ErrorKind::InvalidJson)),
    }
}

/// A `400` naming the query parameter.
fn bad(param: &str, what: &str) -> Error {
    Error::msg(
        ErrorKind::BadRequest,
        format!("Query parameter `{param}` {what}."),
    )
    .with_details(json!({ param: what }))
}

/// The decoded query string.
struct Params(Vec<(String, String)>);

impl Params {
    fn of(uri: &http::Uri) -> Self {
        let pairs = uri
            .query()
            .map(|q| {
                url::form_urlencoded::parse(q.as_bytes())
                    .into_owned()
                    .collect()
            })
            .unwrap_or_default();
        Self(pairs)
    }

    /// Every value of `name`.
    fn all<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.0
            .iter()
            .filter(move |(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// The one value of `name`, trimmed; blank is absent, twice is an error.
    fn one<'a>(&'a self, name: &'a str) -> Result<Option<&'a str>> {
        let mut values = self.all(name);
        let first = values.next();
        if values.next().is_some() {
            return Err(bad(name, "is given more than once"));
        }
        Ok(first.map(str::trim).filter(|v| !v.is_empty()))
    }

    /// A bounded text value.
    fn text(&self, name: &str, max: usize) -> Result<Option<String>> {
        match self.one(name)? {
            Some(v) if v.chars().count() > max || v.chars().any(char::is_control) => Err(bad(
                name,
                &format!("must be at most {max} characters without control characters"),
            )),
            other => Ok(other.map(str::to_owned)),
        }
    }

    /// An integer in `range`.
    fn int<T>(&self, name: &str, range: std::ops::RangeInclusive<T>) -> Result<Option<T>>
    where
        T: std::str::FromStr + PartialOrd + std::fmt::Display,
    {
        let Some(v) = self.one(name)? else {
            return Ok(None);
        };
        let what = format!(
            "must be a whole number from {} to {}",
            range.start(),
            range.end()
        );
        match v.parse::<T>() {
            Ok(n) if range.contains(&n) => Ok(Some(n)),
            _ => Err(bad(name, &what)),
        }
    }
}

/// `page` and `per_page`; a `per_page` above `max` is clamped to it.
fn paging(params: &Params, max: u32) -> Result<(u32, u32)> {
    let page = params.int("page", 1..=MAX_PAGE)?.unwrap_or(1);
    let per_page = params
        .int("per_page", 1..=u32::MAX)?
        .unwrap_or(DEFAULT_PER_PAGE)
        .min(max);
    Ok((page, per_page))
}

/// The sort order: `sort=field`, `-field`, `field:asc|desc`, or `order=asc|desc`.
fn user_sort(params: &Params) -> Result<UserSort> {
    let order = match params.one("order")? {
        None => None,
        Some(o) if o.eq_ignore_ascii_case("asc") => Some(false),
        Some(o) if o.eq_ignore_ascii_case("desc") => Some(true),
        Some(_) => return Err(bad("order", "must be asc or desc")),
    };
    let fields = "must be created_at, name or experience_years, optionally prefixed with - \
                  or suffixed with :asc or :desc";
    let Some(sort) = params.one("sort")? else {
        return Ok(if order == Some(false) {
            UserSort::CreatedAsc
        } else {
            UserSort::CreatedDesc
        });
    };
    let (field, desc) = if let Some(f) = sort.strip_prefix('-') {
        (f, Some(true))
    } else if let Some((f, dir)) = sort.split_once(':') {
        match dir.to_ascii_lowercase().as_str() {
            "asc" => (f, Some(false)),
            "desc" => (f, Some(true)),
            _ => return Err(bad("sort", fields)),
        }
    } else {
        (sort, None)
    };
    let desc = desc.or(order).unwrap_or(false);
    Ok(match (field, desc) {
        ("created_at", false) => UserSort::CreatedAsc,
        ("created_at", true) => UserSort::CreatedDesc,
        ("name", false) => UserSort::NameAsc,
        ("name", true) => UserSort::NameDesc,
        ("experience_years", false) => UserSort::ExperienceAsc,
        ("experience_years", true) => UserSort::ExperienceDesc,
        _ => return Err(bad("sort", fields)),
    })
}

/// The filters, sort and paging of `GET /users` and `GET /users/search`.
fn user_query(params: &Params, search: bool) -> Result<(UserQuery, u32, u32)> {
    let (page, per_page) = paging(params, MAX_PER_PAGE)?;
    let q = params.text("q", 200)?;
    if search {
        match &q {
            None => return Err(bad("q", "is required")),
            Some(q) if !q.chars().any(char::is_alphanumeric) => {
                return Err(bad("q", "must contain a letter or digit"))
            }
            _ => {}
        }
    }
    let min = params.int("min_experience", 0..=80)?;
    let max = params.int("max_experience", 0..=80)?;
    if let (Some(min), Some(max)) = (min, max) {
        if min > max {
            return Err(bad("min_experience", "must not be above max_experience"));
        }
    }
    let mut skills = Vec::new();
    for value in params.all("skills") {
        for skill in value.split(',').map(str::trim).filter(|s| !s.is_empty()) {
            if skill.chars().count() > 50 || skill.chars().any(char::is_control) {
                return Err(bad("skills", "must be skills of at most 50 characters"));
            }
            skills.push(skill.to_owned());
        }
    }
    if skills.len() > MAX_SKILL_FILTERS {
        return Err(bad(
            "skills",
            &format!("must name at most {MAX_SKILL_FILTERS} skills"),
        ));
    }
    let query = UserQuery {
        q,
        industry: params.text("industry", 100)?,
        location: params.text("location", 200)?,
        min_experience: min,
        max_experience: max,
        skills,
        sort: user_sort(params)?,
        page,
        per_page,
        ..UserQuery::default()
    };
    Ok((query, page, per_page))
}

fn timestamp(params: &Params, name: &str) -> Result<Option<DateTime<Utc>>> {
    match params.one(name)? {
        None => Ok(None),
        Some(v) => DateTime::parse_from_rfc3339(v)
            .map(|t| Some(t.with_timezone(&Utc)))
            .map_err(|_| {
                bad(
                    name,
                    "must be an RFC 3339 time such as 2026-12-04T15:22:27Z",
                )
            }),
    }
}

/// The filters and paging of `GET /admin/audit`.
fn audit_query(params: &Params) -> Result<AuditQuery> {
    let (page, per_page) = paging(params, MAX_AUDIT_PER_PAGE)?;
    let since = timestamp(params, "since")?;
    let until = timestamp(params, "until")?;
    if let (Some(s), Some(u)) = (since, until) {
        if s > u {
            return Err(bad("since", "must not be after until"));
        }
    }
    Ok(AuditQuery {
        user_id: params.text("user_id", 128)?,
        event: params.text("event", 64)?,
        since,
        until,
        page,
        per_page,
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn params(q: &str) -> Params {
        Params::of(&format!("/users?{q}").parse().unwrap())
    }

    fn bad_param(q: &str) -> String {
        let e = user_query(&params(q), false).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::BadRequest, "{q}");
        e.details()
            .and_then(|d| d.as_object())
            .and_then(|d| d.keys().next().cloned())
            .unwrap()
    }

    #[test]
    fn bad_values_name_their_parameter() {
        assert_eq!(bad_param("page=0"), "page");
        assert_eq!(bad_param("page=x"), "page");
        assert_eq!(bad_param("per_page=-1"), "per_page");
        assert_eq!(bad_param("min_experience=81"), "min_experience");
        assert_eq!(bad_param("max_experience=ten"), "max_experience");
        assert_eq!(
            bad_param("min_experience=9&max_experience=3"),
            "min_experience"
        );
        assert_eq!(bad_param("sort=email"), "sort");
        assert_eq!(bad_param("sort=name:up"), "sort");
        assert_eq!(bad_param("order=sideways"), "order");
        assert_eq!(bad_param("page=1&page=2"), "page");
    }

    #[test]
    fn sorts_and_defaults() {
        let (q, page, per) = user_query(&params(""), false).unwrap();
        assert_eq!((q.sort, page, per), (UserSort::CreatedDesc, 1, 20));
        let (q, _, per) = user_query(&params("sort=-name&per_page=500"), false).unwrap();
        assert_eq!((q.sort, per), (UserSort::NameDesc, 100));
        let (q, _, _) = user_query(&params("sort=experience_years:desc"), false).unwrap();
        assert_eq!(q.sort, UserSort::ExperienceDesc);
        let (q, _, _) = user_query(&params("sort=name&order=desc"), false).unwrap();
        assert_eq!(q.sort, UserSort::NameDesc);
        let (q, _, _) = user_query(&params("skills=Rust,%20Go&skills=SQL"), false).unwrap();
        assert_eq!(q.skills, vec!["Rust", "Go", "SQL"]);
    }

    #[test]
    fn search_needs_words() {
        assert!(user_query(&params(""), true).is_err());
        assert!(user_query(&params("q=***"), true).is_err());
        let (q, _, _) = user_query(&params("q=rust+dev"), true).unwrap();
        assert_eq!(q.q.as_deref(), Some("rust dev"));
    }

    #[test]
    fn audit_times() {
        let q = audit_query(&params("since=2026-01-01T00:00:00Z&per_page=5000")).unwrap();
        assert!(q.since.is_some());
        assert_eq!(q.per_page, MAX_AUDIT_PER_PAGE);
        assert!(audit_query(&params("since=yesterday")).is_err());
        assert!(audit_query(&params(
            "since=2026-02-01T00:00:00Z&until=2026-01-01T00:00:00Z"
        ))
        .is_err());
    }
}
