//! A paced (open-loop) password-login client for the mixed load scenario:
//! sends `POST /auth/login` at a fixed rate for a fixed time, whatever the
//! server's latency, round-robin over the given accounts, and prints one
//! `PACER ...` summary line.
//!
//! Run with `login_pacer --url http://127.0.0.1:5001 --rate 20 --secs 12
//! --password 'pw' --email a@example.com [--email b@example.com ...]`.

use std::process::ExitCode;
use std::time::{Duration, Instant};

use tokio::task::JoinSet;
use tokio::time::MissedTickBehavior;

#[derive(Debug)]
struct Args {
    url: String,
    rate: f64,
    secs: f64,
    password: String,
    emails: Vec<String>,
}

fn parse() -> Result<Args, String> {
    let mut a = Args {
        url: "http://127.0.0.1:5001".into(),
        rate: 20.0,
        secs: 10.0,
        password: String::new(),
        emails: Vec::new(),
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let value = it.next().ok_or_else(|| format!("{flag} needs a value"))?;
        match flag.as_str() {
            "--url" => a.url = value,
            "--rate" => a.rate = value.parse().map_err(|_| "--rate: a number")?,
            "--secs" => a.secs = value.parse().map_err(|_| "--secs: a number")?,
            "--password" => a.password = value,
            "--email" => a.emails.push(value),
            other => return Err(format!("unknown flag {other}")),
        }
    }
    if a.emails.is_empty() || a.password.is_empty() || a.rate <= 0.0 {
        return Err("give --password, at least one --email and a positive --rate".into());
    }
    Ok(a)
}

fn percentile(sorted: &[Duration], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)].as_secs_f64() * 1e3
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let args = match parse() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("login_pacer: {e}");
            return ExitCode::from(2);
        }
    };
    let client = match reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
    {
        Ok(c) => c,
        Err(e) => {
            eprintln!("login_pacer: {e}");
            return ExitCode::FAILURE;
        }
    };
    let url = format!("{}/auth/login", args.url.trim_end_matches('/'));
    let mut tick = tokio::time::interval(Duration::from_secs_f64(1.0 / args.rate));
    tick.set_missed_tick_behavior(MissedTickBehavior::Burst);
    let start = Instant::now();
    let end = Duration::from_secs_f64(args.secs);
    let mut tasks = JoinSet::new();
    let mut sent = 0usize;
    while start.elapsed() < end {
        tick.tick().await;
        let body = serde_json::json!({
            "email": args.emails[sent % args.emails.len()],
            "password": args.password,
        });
        let (client, url) = (client.clone(), url.clone());
        tasks.spawn(async move {
            let t = Instant::now();
            let status = match client.post(&url).json(&body).send().await {
                Ok(r) => {
                    let s = r.status().as_u16();
                    let _ = r.bytes().await;
                    s
                }
                Err(_) => 0,
            };
            (status, t.elapsed())
        });
        sent += 1;
    }
    let offered = start.elapsed().as_secs_f64();
    let mut ok = Vec::with_capacity(sent);
    let mut errors: Vec<u16> = Vec::new();
    while let Some(done) = tasks.join_next().await {
        match done {
            Ok((200, d)) => ok.push(d),
            Ok((s, _)) => errors.push(s),
            Err(_) => errors.push(0),
        }
    }
    ok.sort();
    errors.sort_unstable();
    errors.dedup();
    println!(
        "PACER sent={sent} ok={} errors={} rate={:.1} p50_ms={:.1} p99_ms={:.1} error_statuses={errors:?}",
        ok.len(),
        sent - ok.len(),
        sent as f64 / offered,
        percentile(&ok, 0.50),
        percentile(&ok, 0.99),
    );
    if ok.len() == sent {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
