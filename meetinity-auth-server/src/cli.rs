//! The operator subcommands besides `serve`, `migrate` and `purge`:
//! `keys generate`, `users create-admin` and `config check`.

use std::io::Read as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Subcommand, ValueEnum};
use meetinity_auth::clock::{Clock, SystemClock};
use meetinity_auth::config::JwtAlgorithm;
use meetinity_auth::model::{AuditEvent, NewUser, UserPatch};
use meetinity_auth::password::{check_strength, PasswordHasher};
use meetinity_auth::secret::Password;
use meetinity_auth::service::AuthServiceBuilder;
use meetinity_auth::token::{generate_pem, StaticKeySet};
use meetinity_auth::{Config, Error, ErrorKind, Result};

/// `keys ...`: signing keys for `JWT_PRIVATE_KEY_FILE`.
#[derive(Debug, Subcommand)]
pub enum KeysCommand {
    /// Write a new private key (PKCS#8 PEM, file mode 0600) for
    /// `JWT_ALGO` + `JWT_PRIVATE_KEY_FILE`, and print its key id.
    Generate {
        /// The signing algorithm.
        #[arg(long, value_enum)]
        alg: KeyAlg,
        /// Where to write the PEM; an existing file is kept unless `--force`.
        #[arg(long, value_name = "FILE")]
        out: PathBuf,
        /// Replace FILE if it exists.
        #[arg(long)]
        force: bool,
    },
}

/// The asymmetric algorithms a key can be generated for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum KeyAlg {
    /// RSA 2048 bits, RS256.
    Rs256,
    /// ECDSA P-256, ES256.
    Es256,
    /// Ed25519, EdDSA.
    Eddsa,
}

impl KeyAlg {
    fn jwt(self) -> JwtAlgorithm {
        match self {
            Self::Rs256 => JwtAlgorithm::Rs256,
            Self::Es256 => JwtAlgorithm::Es256,
            Self::Eddsa => JwtAlgorithm::EdDsa,
        }
    }

    fn env_name(self) -> &'static str {
        match self {
            Self::Rs256 => "RS256",
            Self::Es256 => "ES256",
            Self::Eddsa => "EdDSA",
        }
    }
}

/// `users ...`: account administration.
#[derive(Debug, Subcommand)]
pub enum UsersCommand {
    /// Give the `admin` role to the account with this email, creating the
    /// account (email marked verified) if there is none. Prints what it did.
    CreateAdmin {
        /// The account's email address.
        #[arg(long)]
        email: String,
        /// For a new account, read its password from standard input (without
        /// it, the account signs in after `POST /auth/password/forgot`).
        #[arg(long)]
        password_stdin: bool,
    },
}

/// `config ...`: the configuration.
#[derive(Debug, Subcommand)]
pub enum ConfigCommand {
    /// Print the effective configuration (environment and `.env`) with
    /// secrets redacted; exit 1 naming each problem if there is any.
    Check,
}

/// Writes `contents` to a new file readable by its owner only.
fn write_private(path: &Path, contents: &[u8], force: bool) -> std::io::Result<()> {
    use std::io::Write as _;
    if force {
        match std::fs::remove_file(path) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e),
            _ => {}
        }
    }
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt as _;
        options.mode(0o600);
    }
    let mut file = options.open(path)?;
    file.write_all(contents)?;
    file.sync_all()
}

/// Runs `keys ...`.
pub fn keys(cmd: KeysCommand) -> Result<()> {
    let KeysCommand::Generate { alg, out, force } = cmd;
    let pem = generate_pem(alg.jwt().to_jwt())?;
    let keys = StaticKeySet::from_pem(pem.as_bytes(), alg.jwt().to_jwt())?;
    let kid = keys.kids().next().unwrap_or_default().to_owned();
    write_private(&out, pem.as_bytes(), force).map_err(|e| {
        let hint = if e.kind() == std::io::ErrorKind::AlreadyExists {
            " (use --force to replace it)"
        } else {
            ""
        };
        Error::msg(
            ErrorKind::Config,
            format!("cannot write {}: {e}{hint}", out.display()),
        )
    })?;
    println!(
        "wrote a new {} private key to {} (mode 0600), key id {kid}",
        alg.env_name(),
        out.display()
    );
    println!(
        "use it with JWT_ALGO={} JWT_PRIVATE_KEY_FILE={}",
        alg.env_name(),
        out.display()
    );
    Ok(())
}

/// Runs `users ...`.
pub async fn users(config: Config, cmd: UsersCommand) -> Result<()> {
    let UsersCommand::CreateAdmin {
        email,
        password_stdin,
    } = cmd;
    let email = email.trim().to_owned();
    if email.len() > 254
        || email.chars().any(char::is_whitespace)
        || !email
            .rsplit_once('@')
            .is_some_and(|(l, d)| !l.is_empty() && d.contains('.'))
    {
        return Err(Error::msg(
            ErrorKind::Validation,
            format!("{email:?} is not an email address"),
        ));
    }
    let password = if password_stdin {
        let mut raw = String::new();
        std::io::stdin()
            .read_to_string(&mut raw)
            .map_err(|e| Error::msg(ErrorKind::BadRequest, format!("standard input: {e}")))?;
        let pw = Password::new(raw.trim_end_matches(['\r', '\n']));
        check_strength(&pw, &email)?;
        Some(pw)
    } else {
        None
    };
    let auth = AuthServiceBuilder::from_config(config).build().await?;
    let parts = auth.parts();
    let now = SystemClock.now();
    let (user, what) = match parts.users.get_user_by_email(&email).await? {
        Some(user) if user.roles.iter().any(|r| r == "admin") => {
            println!(
                "{} ({}) is already an admin: nothing to do",
                user.email, user.id
            );
            if password.is_some() {
                println!("the password from standard input was not used (the account exists)");
            }
            return Ok(());
        }
        Some(user) => {
            let mut roles = user.roles.clone();
            roles.push("admin".into());
            let patch = UserPatch {
                roles: Some(roles),
                ..UserPatch::default()
            };
            let user = parts.users.update_user(&user.id, &patch).await?;
            println!(
                "promoted {} ({}) to admin; tokens issued before carry the new role after their next refresh",
                user.email, user.id
            );
            if password.is_some() {
                println!("the password from standard input was not used (the account exists)");
            }
            (user, "admin_granted")
        }
        None => {
            let hash = match &password {
                Some(pw) => Some(PasswordHasher::new(1).hash(pw).await?),
                None => None,
            };
            let new = NewUser {
                email: email.clone(),
                email_verified: true,
                name: None,
                photo_url: None,
                provider: "password".into(),
                roles: vec!["admin".into()],
            };
            let user = parts.users.create_user(&new, hash.as_deref()).await?;
            if hash.is_some() {
                println!(
                    "created admin {} ({}) with the password from standard input",
                    user.email, user.id
                );
            } else {
                println!(
                    "created admin {} ({}) without a password: set one with POST /auth/password/forgot",
                    user.email, user.id
                );
            }
            (user, "admin_created")
        }
    };
    let event = AuditEvent {
        id: event_id(),
        event: what.into(),
        actor_id: None,
        user_id: Some(user.id.clone()),
        outcome: "success".into(),
        method: Some("cli".into()),
        detail: None,
        ip: None,
        user_agent: None,
        created_at: now,
    };
    if let Err(e) = parts.audit.record(&event).await {
        eprintln!("warning: the audit event was not recorded: {e}");
    }
    Ok(())
}

fn event_id() -> String {
    meetinity_auth::secret::random_token(16)
}

/// Problems `Config::from_env` does not see: key material that does not
/// load, an address that cannot be listened on.
fn deeper_problems(config: &Config) -> Vec<String> {
    let mut problems = Vec::new();
    if config.jwt_algorithm != JwtAlgorithm::Hs256 {
        if let Some(pem) = &config.jwt_private_key_pem {
            if let Err(e) =
                StaticKeySet::from_pem(pem.expose().as_bytes(), config.jwt_algorithm.to_jwt())
            {
                problems.push(format!("JWT_PRIVATE_KEY_FILE: {}", e.message()));
            }
        }
    }
    if config.host.parse::<std::net::IpAddr>().is_err() {
        problems.push(format!("APP_HOST: {:?} is not an IP address", config.host));
    }
    problems
}

/// Runs `config check`: the effective configuration on stdout, problems on
/// stderr, exit code 1 when there is any.
pub fn config_check() -> ExitCode {
    let config = match Config::from_env() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("configuration problems:");
            let message = e.message();
            let list = message
                .strip_prefix("invalid configuration: ")
                .unwrap_or(message);
            for problem in list.split("; ") {
                eprintln!("  - {problem}");
            }
            return ExitCode::FAILURE;
        }
    };
    println!("{config:#?}");
    if config.jwt_algorithm == JwtAlgorithm::Hs256 && config.jwt_secret.is_none() {
        eprintln!(
            "warning: JWT_SECRET is not set: a random key is made at each start (tokens do not survive a restart)"
        );
    }
    if config.cors_origins.iter().any(|o| o == "*") {
        eprintln!("note: CORS_ORIGINS is `*`: any origin may call the API (without credentials)");
    }
    let problems = deeper_problems(&config);
    if problems.is_empty() {
        println!("configuration OK");
        ExitCode::SUCCESS
    } else {
        eprintln!("configuration problems:");
        for p in problems {
            eprintln!("  - {p}");
        }
        ExitCode::FAILURE
    }
}
