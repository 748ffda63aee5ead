//! Backups restore: SQLite with `meetinity-auth-server backup` (online, the
//! real binary against a running server), PostgreSQL with `pg_dump` and
//! `pg_restore` (the README's steps). Users can sign in on the restored
//! server and the sessions live at backup time are still live there.

use std::path::Path;
use std::process::Command;

use serde_json::{json, Value};

use crate::support::{
    client, pg_url, start, start_opts, uuid_like, Db, Options, TempDir, TestServer,
};

const PASSWORD: &str = "correct horse battery staple 9";

async fn register(s: &TestServer, email: &str) -> Value {
    let res = client()
        .post(s.url("/auth/register"))
        .json(&json!({"email": email, "password": PASSWORD, "name": "Backed Up"}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 201);
    res.json().await.unwrap()
}

async fn login_status(s: &TestServer, email: &str) -> u16 {
    client()
        .post(s.url("/auth/login"))
        .json(&json!({"email": email, "password": PASSWORD}))
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

async fn verify_status(s: &TestServer, token: &str) -> u16 {
    client()
        .post(s.url("/auth/verify"))
        .json(&json!({ "token": token }))
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

async fn refresh_status(s: &TestServer, refresh: &Value) -> u16 {
    client()
        .post(s.url("/auth/refresh"))
        .json(&json!({ "refresh_token": refresh }))
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

/// Runs the real binary's `backup` with `DATABASE_URL`.
fn backup_cli(database_url: &str, file: &Path) -> std::process::Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_meetinity-auth-server"));
    cmd.arg("backup")
        .arg(file)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("DATABASE_URL", database_url)
        .env("RUST_LOG", "warn");
    // Coverage runs collect the child's profile too.
    if let Ok(profile) = std::env::var("LLVM_PROFILE_FILE") {
        cmd.env("LLVM_PROFILE_FILE", profile);
    }
    cmd.output().unwrap()
}

/// Checks that what was live at backup time is live on `restored`, and that
/// what came after is not there.
async fn assert_restored(restored: &TestServer, before: &[Value], after_email: &str) {
    for set in before {
        let email = set["user"]["email"].as_str().unwrap();
        assert_eq!(login_status(restored, email).await, 200, "{email}");
        // The session of the original server, signed with the same key, is live here.
        assert_eq!(
            verify_status(restored, set["token"].as_str().unwrap()).await,
            200,
            "{email}"
        );
        assert_eq!(refresh_status(restored, &set["refresh_token"]).await, 200);
    }
    assert_eq!(login_status(restored, after_email).await, 401);
}

#[tokio::test]
async fn sqlite_online_backup_restores_users_and_sessions() {
    let dir = TempDir::new();
    let live = dir.0.join("live.db");
    let live_url = format!("sqlite://{}", live.display());
    let original = start(&[("DATABASE_URL", &live_url)]).await;
    let mut before = Vec::new();
    for i in 0..3 {
        before.push(register(&original, &format!("backup-{i}@example.com")).await);
    }
    // Online: the server keeps serving (and writing) while the copy is taken.
    let file = dir.0.join("backup.db");
    let writer = {
        let base = original.url("");
        tokio::spawn(async move {
            for i in 0..10 {
                let _ = client()
                    .post(format!("{base}/auth/register"))
                    .json(
                        &json!({"email": format!("during-{i}@example.com"), "password": PASSWORD}),
                    )
                    .send()
                    .await;
            }
        })
    };
    let out = {
        let (url, file) = (live_url.clone(), file.clone());
        tokio::task::spawn_blocking(move || backup_cli(&url, &file))
            .await
            .unwrap()
    };
    writer.await.unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("backed up"), "{stdout}");
    // Written after the backup: not in it.
    register(&original, "after@example.com").await;
    // Never overwrites.
    let again = backup_cli(&live_url, &file);
    assert!(!again.status.success());
    assert!(String::from_utf8_lossy(&again.stderr).contains("refusing to overwrite"));
    // A missing database is an error, not an empty backup.
    let missing = backup_cli(
        &format!("sqlite://{}", dir.0.join("nope.db").display()),
        &dir.0.join("nope-backup.db"),
    );
    assert!(!missing.status.success());
    assert!(!dir.0.join("nope.db").exists());

    // Restore: the file is the database of a new server.
    let restored_path = dir.0.join("restored.db");
    std::fs::copy(&file, &restored_path).unwrap();
    let restored = start(&[(
        "DATABASE_URL",
        &format!("sqlite://{}", restored_path.display()),
    )])
    .await;
    assert_restored(&restored, &before, "after@example.com").await;
    restored.stop().await.unwrap();
    original.stop().await.unwrap();
}

#[tokio::test]
async fn sqlite_backup_refuses_postgres() {
    let dir = TempDir::new();
    let out = backup_cli(&pg_url(), &dir.0.join("x.db"));
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("pg_dump"));
}

/// `url` with its database name replaced.
fn with_database(url: &str, db: &str) -> String {
    let (base, query) = url.split_once('?').map_or((url, ""), |(b, q)| (b, q));
    let (server, _) = base.rsplit_once('/').unwrap();
    if query.is_empty() {
        format!("{server}/{db}")
    } else {
        format!("{server}/{db}?{query}")
    }
}

fn run(cmd: &mut Command) {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[tokio::test]
async fn postgres_pg_dump_and_pg_restore_into_a_new_database() {
    let schema = crate::support::fresh_schema();
    let mut opts = Options::default().db(Db::Postgres);
    opts.pg_schema = Some(schema.clone());
    let original = start_opts(opts).await;
    let mut before = Vec::new();
    for i in 0..3 {
        let email = format!("pgbackup-{i}-{}@example.com", uuid_like());
        before.push(register(&original, &email).await);
    }
    let dir = TempDir::new();
    let dump = dir.0.join("meetinity.dump");
    // The README's step, limited to this test's schema.
    run(Command::new("pg_dump")
        .arg("--format=custom")
        .arg(format!("--schema={schema}"))
        .arg("--file")
        .arg(&dump)
        .arg(pg_url()));
    let after_email = format!("pgafter-{}@example.com", uuid_like());
    register(&original, &after_email).await;

    // Restore into a new database, as its `public` schema (what a deployment uses).
    let db = format!("restore_{}", uuid_like().replace('-', "_"));
    run(Command::new("psql")
        .arg(pg_url())
        .args(["-v", "ON_ERROR_STOP=1", "-qc"])
        .arg(format!("CREATE DATABASE {db}")));
    let db_url = with_database(&pg_url(), &db);
    run(Command::new("psql").arg(&db_url).args([
        "-v",
        "ON_ERROR_STOP=1",
        "-qc",
        "DROP SCHEMA public CASCADE",
    ]));
    run(Command::new("pg_restore")
        .args(["--no-owner", "--exit-on-error", "--dbname"])
        .arg(&db_url)
        .arg(&dump));
    run(Command::new("psql")
        .arg(&db_url)
        .args(["-v", "ON_ERROR_STOP=1", "-qc"])
        .arg(format!("ALTER SCHEMA {schema} RENAME TO public")));

    let restored = start(&[("DATABASE_URL", &db_url)]).await;
    assert_restored(&restored, &before, &after_email).await;
    restored.stop().await.unwrap();
    original.stop().await.unwrap();
    run(Command::new("psql")
        .arg(pg_url())
        .args(["-v", "ON_ERROR_STOP=1", "-qc"])
        .arg(format!("DROP DATABASE {db} WITH (FORCE)")));
}
