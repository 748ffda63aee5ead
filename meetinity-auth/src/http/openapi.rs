//! The OpenAPI 3.1 document of the standard endpoints, served at
//! `GET /openapi.json`.
//!
//! Written here as data, next to the router; a test compares its paths and
//! methods with [`super::ROUTES`] both ways, and the router answers only the
//! routes of that list, so the document cannot drift from what is served.
//! The error `reason` values come from [`ErrorKind::ALL`].

use serde_json::{json, Map, Value};

use crate::error::ErrorKind;

mod users;

/// A `$ref` to a schema.
fn schema(name: &str) -> Value {
    json!({ "$ref": format!("#/components/schemas/{name}") })
}

/// A JSON response with a schema.
fn json_response(description: &str, schema: Value) -> Value {
    json!({
        "description": description,
        "content": { "application/json": { "schema": schema } }
    })
}

/// A response without a body.
fn empty_response(description: &str) -> Value {
    json!({ "description": description })
}

/// A JSON request body.
fn json_body(schema: Value, required: bool) -> Value {
    json!({
        "required": required,
        "content": { "application/json": { "schema": schema } }
    })
}

/// Shorthand for an error response (the envelope).
fn error(description: &str) -> Value {
    json!({ "$ref": format!("#/components/responses/{description}") })
}

/// One operation.
struct Op {
    method: &'static str,
    id: &'static str,
    tag: &'static str,
    summary: &'static str,
    bearer: bool,
    body: Option<Value>,
    parameters: Vec<Value>,
    responses: Vec<(&'static str, Value)>,
}

impl Op {
    fn new(
        method: &'static str,
        id: &'static str,
        tag: &'static str,
        summary: &'static str,
    ) -> Self {
        Self {
            method,
            id,
            tag,
            summary,
            bearer: false,
            body: None,
            parameters: Vec::new(),
            responses: Vec::new(),
        }
    }

    fn bearer(mut self) -> Self {
        self.bearer = true;
        self
    }

    fn body(mut self, schema: Value, required: bool) -> Self {
        self.body = Some(json_body(schema, required));
        self
    }

    fn path_param(mut self, name: &str, description: &str) -> Self {
        self.parameters.push(json!({
            "name": name, "in": "path", "required": true, "description": description,
            "schema": { "type": "string", "minLength": 1 }
        }));
        self
    }

    fn query(mut self, name: &str, description: &str, schema: Value) -> Self {
        self.parameters.push(json!({
            "name": name, "in": "query", "required": false, "description": description,
            "schema": schema
        }));
        self
    }

    fn response(mut self, status: &'static str, response: Value) -> Self {
        self.responses.push((status, response));
        self
    }

    fn rate_limited(self) -> Self {
        self.response("429", error("RateLimited"))
    }

    fn into_json(self) -> Value {
        let mut responses = Map::new();
        for (status, r) in self.responses {
            responses.insert(status.to_owned(), r);
        }
        if self.bearer {
            responses
                .entry("401")
                .or_insert_with(|| error("Unauthorized"));
        }
        responses.insert("default".into(), error("Error"));
        let mut op = json!({
            "operationId": self.id,
            "tags": [self.tag],
            "summary": self.summary,
            "responses": responses,
        });
        if let Some(obj) = op.as_object_mut() {
            if self.bearer {
                obj.insert("security".into(), json!([{ "bearer": [] }]));
            }
            if let Some(body) = self.body {
                obj.insert("requestBody".into(), body);
            }
            if !self.parameters.is_empty() {
                obj.insert("parameters".into(), Value::Array(self.parameters));
            }
        }
        op
    }
}

fn operations() -> Vec<(&'static str, Op)> {
    let provider = "The identity provider's name (`google`, `linkedin`, ...).";
    let token_set = || json_response("Signed in: a token set.", schema("TokenSet"));
    let accepted = || json_response("Accepted.", schema("Accepted"));
    let str_schema = || json!({ "type": "string" });
    vec![
        // Operations.
        (
            "/health",
            Op::new("get", "health", "operations", "The process is up.")
                .response("200", json_response("Up.", schema("Health"))),
        ),
        (
            "/ready",
            Op::new(
                "get",
                "ready",
                "operations",
                "The database (and Redis, if configured) answer.",
            )
            .response("200", json_response("Ready.", schema("Ready")))
            .response("503", error("Unavailable")),
        ),
        (
            "/metrics",
            Op::new(
                "get",
                "metrics",
                "operations",
                "Prometheus metrics (text format 0.0.4).",
            )
            .response(
                "200",
                json!({
                    "description": "The metrics.",
                    "content": { "text/plain": { "schema": { "type": "string" } } }
                }),
            ),
        ),
        (
            "/openapi.json",
            Op::new("get", "openapi", "operations", "This document.").response(
                "200",
                json_response("The OpenAPI 3.1 document.", json!({ "type": "object" })),
            ),
        ),
        (
            "/.well-known/jwks.json",
            Op::new(
                "get",
                "jwks",
                "authentication",
                "The public keys that verify access tokens (empty for HS256).",
            )
            .response("200", json_response("The key set.", schema("Jwks"))),
        ),
        // Authentication.
        (
            "/auth/{provider}",
            Op::new(
                "post",
                "startLogin",
                "authentication",
                "Starts a sign-in with an identity provider (state, nonce, PKCE).",
            )
            .path_param("provider", provider)
            .body(schema("StartLogin"), false)
            .response(
                "200",
                json_response("Where to send the user.", schema("LoginStarted")),
            )
            .rate_limited(),
        ),
        (
            "/auth/{provider}/callback",
            Op::new(
                "get",
                "finishLogin",
                "authentication",
                "The provider's redirect back: exchanges the code and signs in.",
            )
            .path_param("provider", provider)
            .query("code", "The authorization code.", str_schema())
            .query("state", "The state of the started sign-in.", str_schema())
            .query(
                "error",
                "The provider's error, when it refused.",
                str_schema(),
            )
            .query(
                "iss",
                "The issuer (RFC 9207), when the provider sends it.",
                str_schema(),
            )
            .response("200", token_set())
            .rate_limited(),
        ),
        (
            "/auth/verify",
            Op::new(
                "post",
                "verifyToken",
                "authentication",
                "Verifies an access token (from the body, or the Bearer header).",
            )
            .body(schema("TokenBody"), false)
            .response(
                "200",
                json_response("The token is valid.", schema("Verified")),
            )
            .response("401", error("Unauthorized")),
        ),
        (
            "/auth/profile",
            Op::new("get", "profile", "authentication", "The signed-in user.")
                .bearer()
                .response("200", json_response("The user.", schema("UserEnvelope"))),
        ),
        (
            "/auth/refresh",
            Op::new(
                "post",
                "refresh",
                "authentication",
                "Rotates a refresh token; a reused one revokes the session.",
            )
            .body(schema("RefreshBody"), true)
            .response("200", token_set())
            .response("401", error("Unauthorized"))
            .rate_limited(),
        ),
        (
            "/auth/logout",
            Op::new("post", "logout", "authentication", "Revokes this session.")
                .bearer()
                .response("204", empty_response("Signed out.")),
        ),
        (
            "/auth/logout-all",
            Op::new(
                "post",
                "logoutAll",
                "authentication",
                "Revokes every session of the user.",
            )
            .bearer()
            .response("204", empty_response("Signed out everywhere.")),
        ),
        (
            "/auth/register",
            Op::new(
                "post",
                "register",
                "authentication",
                "Creates an email + password account and signs it in.",
            )
            .body(schema("RegisterBody"), true)
            .response(
                "201",
                json_response("Created and signed in.", schema("TokenSet")),
            )
            .response("409", error("Error"))
            .response("422", error("Error"))
            .rate_limited(),
        ),
        (
            "/auth/login",
            Op::new(
                "post",
                "login",
                "authentication",
                "Signs in with email and password.",
            )
            .body(schema("LoginBody"), true)
            .response("200", token_set())
            .response("401", error("Unauthorized"))
            .rate_limited(),
        ),
        (
            "/auth/email/verify",
            Op::new(
                "get",
                "verifyEmailLink",
                "authentication",
                "Consumes an email-verification token (the link in the mail).",
            )
            .query("token", "The token from the mail.", str_schema())
            .response("200", json_response("Verified.", schema("UserEnvelope")))
            .rate_limited(),
        ),
        (
            "/auth/email/verify",
            Op::new(
                "post",
                "verifyEmail",
                "authentication",
                "Consumes an email-verification token.",
            )
            .body(schema("TokenBody"), true)
            .response("200", json_response("Verified.", schema("UserEnvelope")))
            .rate_limited(),
        ),
        (
            "/auth/email/verify/resend",
            Op::new(
                "post",
                "resendVerification",
                "authentication",
                "Mails a new verification link to the signed-in user.",
            )
            .bearer()
            .response("202", accepted()),
        ),
        (
            "/auth/password/forgot",
            Op::new(
                "post",
                "forgotPassword",
                "authentication",
                "Mails a reset token if the account exists; the same answer either way.",
            )
            .body(schema("EmailBody"), true)
            .response("202", accepted())
            .rate_limited(),
        ),
        (
            "/auth/password/reset",
            Op::new(
                "post",
                "resetPassword",
                "authentication",
                "Sets a new password with a reset token; every session is revoked.",
            )
            .body(schema("ResetBody"), true)
            .response("204", empty_response("Password set."))
            .rate_limited(),
        ),
        (
            "/auth/password/change",
            Op::new(
                "post",
                "changePassword",
                "authentication",
                "Changes the password; the other sessions are revoked.",
            )
            .bearer()
            .body(schema("ChangeBody"), true)
            .response("204", empty_response("Password changed.")),
        ),
    ]
}

fn nullable(ty: &str) -> Value {
    json!({ "type": [ty, "null"] })
}

fn timestamp() -> Value {
    json!({ "type": "string", "format": "date-time" })
}

fn schemas(error_schema: Value) -> Map<String, Value> {
    let mut m = Map::new();
    m.insert("Error".into(), error_schema);
    m.insert(
        "Health".into(),
        json!({
            "type": "object", "required": ["status"],
            "properties": { "status": { "const": "ok" } }
        }),
    );
    m.insert(
        "Ready".into(),
        json!({
            "type": "object", "required": ["status", "checks"],
            "properties": {
                "status": { "const": "ready" },
                "checks": {
                    "type": "array",
                    "items": {
                        "type": "object", "required": ["name", "ok"],
                        "properties": {
                            "name": { "type": "string" },
                            "ok": { "type": "boolean" },
                            "error": { "type": "string" }
                        }
                    }
                }
            }
        }),
    );
    m.insert(
        "Jwks".into(),
        json!({
            "type": "object", "required": ["keys"],
            "properties": {
                "keys": {
                    "type": "array",
                    "items": {
                        "type": "object", "required": ["kty", "kid"],
                        "properties": {
                            "kty": { "type": "string" },
                            "kid": { "type": "string" },
                            "alg": { "type": "string" },
                            "use": { "type": "string" }
                        }
                    }
                }
            }
        }),
    );
    m.insert(
        "Accepted".into(),
        json!({
            "type": "object", "required": ["status"],
            "properties": { "status": { "const": "accepted" } }
        }),
    );
    m.insert("StartLogin".into(), json!({
                "type": "object", "additionalProperties": false,
                "properties": {
                    "redirect_uri": {
                        "type": "string",
                        "description": "The provider's configured redirect URI or one of `ALLOWED_REDIRECTS` (exact match)."
                    }
                }
            }));
    m.insert("LoginStarted".into(), json!({
                "type": "object", "required": ["auth_url", "state"],
                "properties": {
                    "auth_url": { "type": "string", "description": "Carries state, nonce and a PKCE S256 challenge." },
                    "state": { "type": "string" }
                }
            }));
    m.insert(
        "TokenBody".into(),
        json!({
            "type": "object",
            "properties": { "token": { "type": "string" } }
        }),
    );
    m.insert(
        "RefreshBody".into(),
        json!({
            "type": "object", "required": ["refresh_token"],
            "properties": { "refresh_token": { "type": "string" } }
        }),
    );
    m.insert(
        "RegisterBody".into(),
        json!({
            "type": "object", "required": ["email", "password"],
            "properties": {
                "email": { "type": "string", "format": "email" },
                "password": { "type": "string", "minLength": 10 },
                "name": nullable("string")
            }
        }),
    );
    m.insert(
        "LoginBody".into(),
        json!({
            "type": "object", "required": ["email", "password"],
            "properties": {
                "email": { "type": "string" },
                "password": { "type": "string" }
            }
        }),
    );
    m.insert(
        "EmailBody".into(),
        json!({
            "type": "object", "required": ["email"],
            "properties": { "email": { "type": "string" } }
        }),
    );
    m.insert(
        "ResetBody".into(),
        json!({
            "type": "object", "required": ["token", "password"],
            "properties": {
                "token": { "type": "string" },
                "password": { "type": "string" }
            }
        }),
    );
    m.insert(
        "ChangeBody".into(),
        json!({
            "type": "object", "required": ["current_password", "new_password"],
            "properties": {
                "current_password": { "type": "string" },
                "new_password": { "type": "string" }
            }
        }),
    );
    m.insert(
        "Verified".into(),
        json!({
            "type": "object", "required": ["valid", "sub", "exp", "sid"],
            "properties": {
                "valid": { "const": true },
                "sub": { "type": "string" },
                "exp": { "type": "integer" },
                "sid": { "type": "string" },
                "email": { "type": "string" },
                "roles": { "type": "array", "items": { "type": "string" } }
            }
        }),
    );
    m.insert("TokenSet".into(), json!({
                "type": "object",
                "required": ["token", "refresh_token", "token_type", "expires_in", "user"],
                "properties": {
                    "token": { "type": "string", "description": "The access token (a JWT)." },
                    "refresh_token": { "type": "string", "description": "Opaque; rotated on every use." },
                    "token_type": { "const": "Bearer" },
                    "expires_in": { "type": "integer", "description": "Seconds until the access token expires." },
                    "user": schema("User")
                }
            }));
    m.insert(
        "UserEnvelope".into(),
        json!({
            "type": "object", "required": ["user"],
            "properties": { "user": schema("User") }
        }),
    );
    m.insert(
        "SocialAccount".into(),
        json!({
            "type": "object", "required": ["provider", "subject"],
            "properties": {
                "provider": { "type": "string" },
                "subject": { "type": "string" },
                "email": nullable("string"),
                "email_verified": { "type": "boolean" },
                "created_at": timestamp(),
                "last_login_at": { "type": ["string", "null"], "format": "date-time" }
            }
        }),
    );
    m.insert("User".into(), json!({
                "type": "object",
                "description": "A user. Fields hidden by the owner's privacy settings are left out for other users.",
                "required": ["id"],
                "properties": {
                    "id": { "type": "string" },
                    "email": { "type": "string" },
                    "email_verified": { "type": "boolean" },
                    "name": nullable("string"),
                    "photo_url": nullable("string"),
                    "title": nullable("string"),
                    "company": nullable("string"),
                    "location": nullable("string"),
                    "industry": nullable("string"),
                    "linkedin_url": nullable("string"),
                    "experience_years": nullable("integer"),
                    "provider": { "type": "string" },
                    "bio": nullable("string"),
                    "timezone": nullable("string"),
                    "skills": { "type": "array", "items": { "type": "string" } },
                    "interests": { "type": "array", "items": { "type": "string" } },
                    "is_active": { "type": "boolean" },
                    "privacy_settings": {
                        "type": "object",
                        "additionalProperties": { "enum": ["public", "connections", "private"] }
                    },
                    "preferences": { "type": "object" },
                    "social_accounts": { "type": "array", "items": schema("SocialAccount") },
                    "roles": { "type": "array", "items": { "type": "string" } },
                    "last_login": { "type": ["string", "null"], "format": "date-time" },
                    "last_active_at": { "type": ["string", "null"], "format": "date-time" },
                    "created_at": timestamp(),
                    "updated_at": timestamp()
                }
            }));
    m
}

fn components() -> Value {
    let mut reasons: Vec<&str> = ErrorKind::ALL.iter().map(|k| k.reason()).collect();
    reasons.sort_unstable();
    reasons.dedup();
    let error_schema = json!({
        "type": "object",
        "required": ["error"],
        "properties": {
            "error": {
                "type": "object",
                "required": ["code", "message", "reason"],
                "properties": {
                    "code": { "type": "integer", "minimum": 400, "maximum": 599 },
                    "message": { "type": "string", "description": "For people." },
                    "reason": {
                        "type": "string",
                        "description": "For programs: stable, snake_case.",
                        "enum": reasons,
                    },
                    "details": { "description": "Per-field messages, or other structured details." }
                }
            }
        }
    });
    let error_response = |description: &str| json_response(description, schema("Error"));
    json!({
        "securitySchemes": {
            "bearer": { "type": "http", "scheme": "bearer", "bearerFormat": "JWT" }
        },
        "responses": {
            "Error": error_response("An error: the envelope with a stable `reason`."),
            "Unauthorized": {
                "description": "A missing (`missing_token`) or invalid, expired or revoked (`invalid_token`) token; `WWW-Authenticate: Bearer` tells which.",
                "content": { "application/json": { "schema": schema("Error") } }
            },
            "RateLimited": {
                "description": "Too many requests (`rate_limited`); `Retry-After` says when to come back.",
                "headers": {
                    "Retry-After": { "description": "Seconds to wait.", "schema": { "type": "integer" } }
                },
                "content": { "application/json": { "schema": schema("Error") } }
            },
            "Unavailable": error_response("A dependency does not answer (`unavailable`); `details.checks` says which."),
        },
        "schemas": schemas(error_schema),
    })
}

/// The OpenAPI 3.1 document.
pub fn document() -> Value {
    let mut paths = Map::new();
    for (path, op) in operations().into_iter().chain(users::operations()) {
        let method = op.method;
        let entry = paths
            .entry(path.to_owned())
            .or_insert_with(|| Value::Object(Map::new()));
        if let Some(obj) = entry.as_object_mut() {
            obj.insert(method.to_owned(), op.into_json());
        }
    }
    json!({
        "openapi": "3.1.0",
        "info": {
            "title": "Meetinity Auth",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "Sign-in (OpenID Connect, email + password), JWT sessions with rotating refresh tokens, and user profiles. Errors are `{\"error\": {\"code\", \"message\", \"reason\"}}`; the `reason` values are listed in the `Error` schema.",
            "license": { "name": "MIT OR Apache-2.0", "identifier": "MIT OR Apache-2.0" }
        },
        "tags": [
            { "name": "authentication" },
            { "name": "users" },
            { "name": "operations" }
        ],
        "paths": paths,
        "components": components(),
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use std::collections::BTreeSet;

    use super::*;

    const METHODS: &[&str] = &[
        "get", "put", "post", "delete", "options", "head", "patch", "trace",
    ];

    #[test]
    fn document_and_router_list_the_same_operations() {
        let doc = document();
        let documented: BTreeSet<(String, String)> = doc["paths"]
            .as_object()
            .unwrap()
            .iter()
            .flat_map(|(path, item)| {
                item.as_object()
                    .unwrap()
                    .keys()
                    .filter(|k| METHODS.contains(&k.as_str()))
                    .map(move |m| (m.to_uppercase(), path.clone()))
            })
            .collect();
        let routed: BTreeSet<(String, String)> = super::super::ROUTES
            .iter()
            .flat_map(|(path, methods)| {
                methods
                    .iter()
                    .map(move |m| (m.as_str().to_owned(), (*path).to_owned()))
            })
            .collect();
        let undocumented: Vec<_> = routed.difference(&documented).collect();
        let unrouted: Vec<_> = documented.difference(&routed).collect();
        assert!(
            undocumented.is_empty(),
            "routed but not in the OpenAPI document: {undocumented:?}"
        );
        assert!(
            unrouted.is_empty(),
            "in the OpenAPI document but not routed: {unrouted:?}"
        );
    }

    #[test]
    fn every_reason_is_listed_and_every_ref_resolves() {
        let doc = document();
        let listed = &doc["components"]["schemas"]["Error"]["properties"]["error"]["properties"]
            ["reason"]["enum"];
        for kind in ErrorKind::ALL {
            assert!(
                listed
                    .as_array()
                    .unwrap()
                    .contains(&Value::from(kind.reason())),
                "{kind:?}"
            );
        }
        fn refs(v: &Value, out: &mut Vec<String>) {
            match v {
                Value::Object(m) => {
                    if let Some(Value::String(r)) = m.get("$ref") {
                        out.push(r.clone());
                    }
                    m.values().for_each(|v| refs(v, out));
                }
                Value::Array(a) => a.iter().for_each(|v| refs(v, out)),
                _ => {}
            }
        }
        let mut all = Vec::new();
        refs(&doc, &mut all);
        assert!(!all.is_empty());
        for r in all {
            let pointer = r.trim_start_matches('#');
            assert!(doc.pointer(pointer).is_some(), "dangling $ref {r}");
        }
        let mut ids = BTreeSet::new();
        for item in doc["paths"].as_object().unwrap().values() {
            for op in item.as_object().unwrap().values() {
                let id = op["operationId"].as_str().unwrap();
                assert!(ids.insert(id.to_owned()), "duplicate operationId {id}");
                assert!(op["responses"]["default"].is_object(), "{id}");
            }
        }
    }

    /// Every listed route reaches a handler: with placeholder parameters and
    /// no token, none answers the router's 404 or 405.
    #[cfg(all(feature = "sqlite", feature = "moka"))]
    #[tokio::test]
    async fn every_listed_route_has_a_handler() {
        use crate::service::AuthServiceBuilder;
        let config = crate::Config::from_vars([("DATABASE_URL", "sqlite::memory:")]).unwrap();
        let auth = AuthServiceBuilder::from_config(config)
            .build()
            .await
            .unwrap();
        let api = super::super::Api::for_authenticator(auth, super::super::ApiSettings::default());
        for (template, methods) in super::super::ROUTES {
            let path: String = template
                .split('/')
                .map(|s| if s.starts_with('{') { "placeholder" } else { s })
                .collect::<Vec<_>>()
                .join("/");
            assert_eq!(
                super::super::match_route(&path).map(|r| r.0),
                Some(*template)
            );
            for m in *methods {
                let req = http::Request::builder()
                    .method(m.clone())
                    .uri(&path)
                    .body(http_body_util::Empty::<bytes::Bytes>::new())
                    .unwrap();
                let route = super::super::route_index(&path);
                if let Err(e) = api.dispatch(req, route).await {
                    assert!(
                        !matches!(e.kind(), ErrorKind::NotFound | ErrorKind::MethodNotAllowed),
                        "{m} {template}: {e}"
                    );
                }
            }
        }
    }

    #[test]
    fn path_parameters_match_the_templates() {
        let doc = document();
        for (path, item) in doc["paths"].as_object().unwrap() {
            let in_template: BTreeSet<&str> = path
                .split('/')
                .filter_map(|s| s.strip_prefix('{').and_then(|s| s.strip_suffix('}')))
                .collect();
            for (method, op) in item.as_object().unwrap() {
                let declared: BTreeSet<&str> = op["parameters"]
                    .as_array()
                    .map(|a| {
                        a.iter()
                            .filter(|p| p["in"] == "path")
                            .map(|p| p["name"].as_str().unwrap())
                            .collect()
                    })
                    .unwrap_or_default();
                assert_eq!(in_template, declared, "{method} {path}");
            }
        }
    }
}
