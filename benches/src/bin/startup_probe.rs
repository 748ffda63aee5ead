//! Measures start-up time: spawns a server command, polls `GET /ready` in a
//! tight loop (a fresh connection every millisecond) until it answers 200,
//! prints the time from spawn to that answer, stops the server (SIGTERM,
//! then SIGKILL) and repeats. Prints one `STARTUP ...` summary line.
//!
//! Run with `startup_probe --addr 127.0.0.1:5001 --runs 5 -- /path/to/server`
//! (the server inherits the environment).

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Child, Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

fn ready(addr: &SocketAddr) -> bool {
    let Ok(mut s) = TcpStream::connect_timeout(addr, Duration::from_millis(100)) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
    let req = "GET /ready HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n";
    if s.write_all(req.as_bytes()).is_err() {
        return false;
    }
    let mut head = [0u8; 12];
    s.read_exact(&mut head).is_ok() && head.starts_with(b"HTTP/1.1 200")
}

fn stop(child: &mut Child) {
    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let deadline = Instant::now() + Duration::from_secs(5);
    while Instant::now() < deadline {
        if let Ok(Some(_)) = child.try_wait() {
            return;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    let _ = child.kill();
    let _ = child.wait();
}

fn main() -> ExitCode {
    let mut addr: Option<SocketAddr> = None;
    let mut runs = 5usize;
    let mut cmd: Vec<String> = Vec::new();
    let mut it = std::env::args().skip(1);
    while let Some(a) = it.next() {
        match a.as_str() {
            "--addr" => addr = it.next().and_then(|v| v.parse().ok()),
            "--runs" => runs = it.next().and_then(|v| v.parse().ok()).unwrap_or(5).max(1),
            "--" => cmd.extend(it.by_ref()),
            other => {
                eprintln!("startup_probe: unknown argument {other}");
                return ExitCode::from(2);
            }
        }
    }
    let (Some(addr), Some((program, rest))) = (addr, cmd.split_first()) else {
        eprintln!("startup_probe: give --addr HOST:PORT and -- COMMAND");
        return ExitCode::from(2);
    };
    if ready(&addr) {
        eprintln!("startup_probe: something already answers on {addr}");
        return ExitCode::FAILURE;
    }
    let mut times = Vec::with_capacity(runs);
    for _ in 0..runs {
        let t0 = Instant::now();
        let mut child = match Command::new(program)
            .args(rest)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
        {
            Ok(c) => c,
            Err(e) => {
                eprintln!("startup_probe: cannot start {program}: {e}");
                return ExitCode::FAILURE;
            }
        };
        let deadline = t0 + Duration::from_secs(30);
        let mut up = None;
        while Instant::now() < deadline {
            if ready(&addr) {
                up = Some(t0.elapsed());
                break;
            }
            if let Ok(Some(status)) = child.try_wait() {
                eprintln!("startup_probe: the server exited early ({status})");
                return ExitCode::FAILURE;
            }
            std::thread::sleep(Duration::from_millis(1));
        }
        stop(&mut child);
        match up {
            Some(d) => times.push(d.as_secs_f64() * 1e3),
            None => {
                eprintln!("startup_probe: /ready did not answer 200 within 30 s");
                return ExitCode::FAILURE;
            }
        }
    }
    times.sort_by(f64::total_cmp);
    let median = times[times.len() / 2];
    let all: Vec<String> = times.iter().map(|t| format!("{t:.1}")).collect();
    println!(
        "STARTUP median_ms={median:.1} min_ms={:.1} max_ms={:.1} runs_ms={}",
        times[0],
        times[times.len() - 1],
        all.join(",")
    );
    ExitCode::SUCCESS
}
