//! The Users and admin operations of the OpenAPI document.

use serde_json::{json, Value};

use super::{empty_response, json_response, schema, timestamp, Op};

fn object(properties: Value) -> Value {
    json!({ "type": "object", "properties": properties })
}

fn error_body(description: &str) -> Value {
    json_response(description, schema("Error"))
}

fn connection() -> Value {
    json!({
        "type": "object",
        "properties": {
            "id": { "type": "string" },
            "user_id": { "type": "string" },
            "target_user_id": { "type": ["string", "null"] },
            "external_reference": { "type": ["string", "null"] },
            "connection_type": { "type": "string" },
            "status": { "enum": ["pending", "accepted", "blocked"] },
            "attributes": { "type": "object" },
            "created_at": timestamp(),
            "updated_at": timestamp()
        }
    })
}

fn session() -> Value {
    json!({
        "type": "object",
        "properties": {
            "id": { "type": "string" },
            "method": { "type": "string" },
            "created_at": timestamp(),
            "last_used_at": timestamp(),
            "expires_at": timestamp(),
            "ip": { "type": ["string", "null"] },
            "user_agent": { "type": ["string", "null"] },
            "current": { "type": "boolean" }
        }
    })
}

fn audit_event() -> Value {
    json!({
        "type": "object",
        "properties": {
            "id": { "type": "string" },
            "event": { "type": "string" },
            "actor_id": { "type": ["string", "null"] },
            "user_id": { "type": ["string", "null"] },
            "outcome": { "enum": ["success", "failure"] },
            "method": { "type": ["string", "null"] },
            "detail": { "type": ["string", "null"] },
            "ip": { "type": ["string", "null"] },
            "user_agent": { "type": ["string", "null"] },
            "created_at": timestamp()
        }
    })
}

fn paged(items: Value) -> Value {
    json!({
        "type": "object",
        "required": ["items", "page", "per_page", "total"],
        "properties": {
            "items": { "type": "array", "items": items },
            "page": { "type": "integer", "minimum": 1 },
            "per_page": { "type": "integer", "minimum": 1 },
            "total": { "type": "integer", "minimum": 0 }
        }
    })
}

/// A page of users: `total` counts at most `USERS_MAX_TOTAL` matches.
fn users_paged(users: Value) -> Value {
    let mut page = paged(users);
    page["required"] = json!(["items", "page", "per_page", "total", "total_exact"]);
    page["properties"]["total"]["description"] =
        json!("The number of matches, or `USERS_MAX_TOTAL` (default 1000) when there are more.");
    page["properties"]["total_exact"] = json!({
        "type": "boolean",
        "description": "False when `total` is the `USERS_MAX_TOTAL` cap and more users match (narrow the query to count them)."
    });
    page
}

fn visibility_map() -> Value {
    json!({
        "type": "object",
        "additionalProperties": { "enum": ["public", "connections", "private"] }
    })
}

/// The filters, sort and paging of the user listings.
fn listing(op: Op) -> Op {
    let int = |min: u32, max: u32| json!({ "type": "integer", "minimum": min, "maximum": max });
    let text = || json!({ "type": "string" });
    op.query("page", "1-based page (default 1).", int(1, 100_000))
        .query(
            "per_page",
            "Page size (default 20; above 100 answers 100).",
            json!({ "type": "integer", "minimum": 1 }),
        )
        .query("industry", "Exact industry, ignoring case.", text())
        .query("location", "Exact location, ignoring case.", text())
        .query("min_experience", "Fewest years of experience.", int(0, 80))
        .query("max_experience", "Most years of experience.", int(0, 80))
        .query(
            "skills",
            "Users having every skill (comma-separated or repeated), ignoring case.",
            text(),
        )
        .query(
            "sort",
            "`created_at`, `name` or `experience_years`; `-field` or `field:desc` for descending (default `-created_at`).",
            text(),
        )
        .query("order", "`asc` or `desc`, when `sort` gives none.", json!({ "enum": ["asc", "desc"] }))
        .response(
            "400",
            error_body(
                "A bad query value; `details` names the parameter. Also a `page` that starts past the first `USERS_MAX_TOTAL` matches (narrow the query instead).",
            ),
        )
}

fn user_op(method: &'static str, id: &'static str, summary: &'static str) -> Op {
    Op::new(method, id, "users", summary)
        .bearer()
        .path_param("id", "The user's id.")
        .response("404", error_body("No such user."))
}

fn self_or_admin(op: Op) -> Op {
    op.response(
        "403",
        error_body("Neither the user nor an admin (`forbidden`)."),
    )
}

fn invalid(op: Op) -> Op {
    op.response(
        "422",
        error_body("Invalid fields (`validation_failed`); `details` is `{field: message}`."),
    )
}

/// The operations, by path.
pub(super) fn operations() -> Vec<(&'static str, Op)> {
    let users = || schema("User");
    let profile_fields = json!({
        "type": "object",
        "description": "Any of the writable profile fields; unknown and read-only fields are refused.",
        "properties": {
            "name": { "type": ["string", "null"], "maxLength": 200 },
            "photo_url": { "type": ["string", "null"], "format": "uri" },
            "title": { "type": ["string", "null"], "maxLength": 200 },
            "company": { "type": ["string", "null"], "maxLength": 200 },
            "location": { "type": ["string", "null"], "maxLength": 200 },
            "industry": { "type": ["string", "null"], "maxLength": 100 },
            "linkedin_url": { "type": ["string", "null"], "format": "uri" },
            "experience_years": { "type": ["integer", "null"], "minimum": 0, "maximum": 80 },
            "bio": { "type": ["string", "null"], "maxLength": 5000 },
            "timezone": { "type": ["string", "null"], "description": "An IANA name such as Europe/Paris." },
            "skills": { "type": "array", "maxItems": 50, "items": { "type": "string", "maxLength": 50 } },
            "interests": { "type": "array", "maxItems": 50, "items": { "type": "string", "maxLength": 50 } },
            "privacy_settings": visibility_map(),
            "preferences": { "type": "object" },
            "is_active": { "type": "boolean", "description": "Admins only." }
        },
        "additionalProperties": false
    });
    let user_envelope = || json_response("The user.", schema("UserEnvelope"));
    let update = |method: &'static str, id: &'static str| {
        invalid(self_or_admin(
            user_op(method, id, "Updates profile fields (self or admin).")
                .body(profile_fields.clone(), true)
                .response("200", user_envelope()),
        ))
    };
    vec![
        (
            "/users",
            listing(
                Op::new("get", "listUsers", "users", "Active users, filtered, sorted and paged.")
                    .bearer(),
            )
            .response("200", json_response("A page of users.", users_paged(users()))),
        ),
        (
            "/users/search",
            listing(
                Op::new("get", "searchUsers", "users", "Full-text search over name, title, company, skills and bio.")
                    .bearer()
                    .query("q", "The words to find (required); each is a prefix.", json!({ "type": "string", "maxLength": 200 })),
            )
            .response(
                "200",
                json_response(
                    "A page of matches.",
                    json!({
                        "allOf": [users_paged(users())],
                        "properties": { "query": { "type": "string" } }
                    }),
                ),
            ),
        ),
        (
            "/users/{id}",
            user_op("get", "getUser", "A user; fields its owner hid are left out for others.")
                .response("200", user_envelope()),
        ),
        ("/users/{id}", update("patch", "updateUser")),
        ("/users/{id}", update("put", "replaceUser")),
        (
            "/users/{id}",
            self_or_admin(user_op("delete", "deactivateUser", "Deactivates the account and revokes its sessions."))
                .response("204", empty_response("Deactivated.")),
        ),
        (
            "/users/{id}/preferences",
            invalid(self_or_admin(
                user_op("put", "updatePreferences", "Merges preferences; a null value deletes the key.")
                    .body(object(json!({ "preferences": { "type": "object" } })), true)
                    .response(
                        "200",
                        json_response("Every preference.", object(json!({ "preferences": { "type": "object" } }))),
                    ),
            )),
        ),
        (
            "/users/{id}/privacy",
            invalid(self_or_admin(
                user_op("put", "updatePrivacy", "Sets who sees each field; unlisted fields are public, except email.")
                    .body(object(json!({ "privacy_settings": visibility_map() })), true)
                    .response(
                        "200",
                        json_response("The settings.", object(json!({ "privacy_settings": visibility_map() }))),
                    ),
            )),
        ),
        (
            "/users/{id}/social-accounts",
            self_or_admin(user_op("get", "listSocialAccounts", "The linked provider identities."))
                .response(
                    "200",
                    json_response(
                        "The identities.",
                        object(json!({ "items": { "type": "array", "items": schema("SocialAccount") } })),
                    ),
                ),
        ),
        (
            "/users/{id}/social-accounts/{provider}",
            self_or_admin(user_op("delete", "unlinkSocialAccount", "Unlinks a provider identity."))
                .path_param("provider", "The provider's name.")
                .response("204", empty_response("Unlinked."))
                .response("409", error_body("The last way to sign in (`last_sign_in_method`).")),
        ),
        (
            "/users/{id}/connections",
            self_or_admin(user_op("get", "listConnections", "The user's connections, either side."))
                .query("page", "1-based page.", json!({ "type": "integer", "minimum": 1 }))
                .query("per_page", "Page size (default 20, at most 100).", json!({ "type": "integer", "minimum": 1 }))
                .response("200", json_response("A page of connections.", paged(connection()))),
        ),
        (
            "/users/{id}/connections",
            invalid(self_or_admin(
                user_op("post", "createConnection", "Connects to another user (pending until they accept) or to an external reference.")
                    .body(
                        object(json!({
                            "target_user_id": { "type": "string" },
                            "external_reference": { "type": "string", "maxLength": 512 },
                            "connection_type": { "type": "string", "maxLength": 50 },
                            "status": { "enum": ["pending", "accepted", "blocked"] },
                            "attributes": { "type": "object" }
                        })),
                        true,
                    )
                    .response("201", json_response("Created.", object(json!({ "connection": connection() }))))
                    .response("409", error_body("The pair is already connected (`conflict`).")),
            )),
        ),
        (
            "/users/{id}/connections/{connection_id}",
            invalid(self_or_admin(
                user_op("patch", "updateConnection", "Changes the status (the invited user) or the attributes (the owner).")
                    .path_param("connection_id", "The connection's id.")
                    .body(
                        object(json!({
                            "status": { "enum": ["pending", "accepted", "blocked"] },
                            "attributes": { "type": "object" }
                        })),
                        true,
                    )
                    .response("200", json_response("Updated.", object(json!({ "connection": connection() })))),
            )),
        ),
        (
            "/users/{id}/connections/{connection_id}",
            self_or_admin(user_op("delete", "deleteConnection", "Deletes a connection, from either side."))
                .path_param("connection_id", "The connection's id.")
                .response("204", empty_response("Deleted.")),
        ),
        (
            "/users/{id}/sessions",
            self_or_admin(user_op("get", "listSessions", "The live sessions; `current` marks the caller's."))
                .response(
                    "200",
                    json_response("The sessions.", object(json!({ "items": { "type": "array", "items": session() } }))),
                ),
        ),
        (
            "/users/{id}/sessions/{session_id}",
            self_or_admin(user_op("delete", "revokeSession", "Revokes a session: its tokens stop working at once."))
                .path_param("session_id", "The session's id (the JWT `sid`).")
                .response("204", empty_response("Revoked.")),
        ),
        (
            "/users/{id}/export",
            self_or_admin(user_op("get", "exportUser", "Everything held about the user."))
                .response(
                    "200",
                    json_response(
                        "The export.",
                        object(json!({
                            "user": users(),
                            "preferences": { "type": "object" },
                            "privacy_settings": visibility_map(),
                            "social_accounts": { "type": "array", "items": schema("SocialAccount") },
                            "connections": { "type": "array", "items": connection() },
                            "sessions": { "type": "array", "items": { "type": "object" } },
                            "audit_events": { "type": "array", "items": audit_event() },
                            "exported_at": timestamp()
                        })),
                    ),
                ),
        ),
        (
            "/users/{id}/erase",
            self_or_admin(user_op("post", "eraseUser", "Pseudonymises the account now, revokes its sessions and schedules the purge."))
                .response(
                    "200",
                    json_response(
                        "Erased.",
                        object(json!({ "user": users(), "scheduled_purge_at": timestamp() })),
                    ),
                )
                .response("409", error_body("Already erased (`conflict`).")),
        ),
        (
            "/admin/audit",
            Op::new("get", "listAuditEvents", "operations", "Audit events, newest first (admins only).")
                .bearer()
                .query("user_id", "Events concerning this user.", json!({ "type": "string" }))
                .query("event", "This event name only.", json!({ "type": "string" }))
                .query("since", "At or after (RFC 3339).", timestamp())
                .query("until", "Before (RFC 3339).", timestamp())
                .query("page", "1-based page.", json!({ "type": "integer", "minimum": 1 }))
                .query("per_page", "Page size (default 20, at most 1000).", json!({ "type": "integer", "minimum": 1 }))
                .response("200", json_response("A page of events.", paged(audit_event())))
                .response("400", error_body("A bad query value; `details` names the parameter."))
                .response("403", error_body("Not an admin (`forbidden`).")),
        ),
    ]
}
