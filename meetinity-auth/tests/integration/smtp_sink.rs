//! A minimal SMTP server on loopback that keeps what it receives: the real
//! network peer for mail tests (any test module may use it).
//!
//! ```ignore
//! let sink = SmtpSink::start().await;
//! let mailer = SmtpMailer::new(&sink.url(), "App <no-reply@app.test>", Duration::from_secs(5))?;
//! // ... code under test sends a mail to alice@example.com ...
//! let mail = sink.wait_for("alice@example.com", Duration::from_secs(5)).await.unwrap();
//! assert!(mail.body().contains("token="));
//! ```
//!
//! Speaks EHLO/HELO, MAIL FROM, RCPT TO, DATA (with dot-unstuffing), RSET,
//! NOOP and QUIT; answers 502 to anything else. Several messages per
//! connection and several connections at once are fine.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncBufRead, AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Notify;
use tokio::task::JoinHandle;

/// Longest command line accepted, in bytes.
const MAX_LINE: usize = 64 * 1024;
/// Largest message accepted, in bytes.
const MAX_DATA: usize = 10 * 1024 * 1024;

/// One message as the sink received it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReceivedMail {
    /// The envelope sender (`MAIL FROM`), without angle brackets.
    pub from: String,
    /// The envelope recipients (`RCPT TO`), without angle brackets.
    pub to: Vec<String>,
    /// The message (headers and body) after dot-unstuffing, CRLF line ends.
    pub data: String,
}

impl ReceivedMail {
    /// The headers part of `data`.
    pub fn headers(&self) -> &str {
        self.data
            .split_once("\r\n\r\n")
            .map_or(&self.data, |(h, _)| h)
    }

    /// The raw body part of `data` (still transfer-encoded).
    pub fn raw_body(&self) -> &str {
        self.data.split_once("\r\n\r\n").map_or("", |(_, b)| b)
    }

    /// The value of header `name` (case-insensitive), unfolded.
    pub fn header(&self, name: &str) -> Option<String> {
        let mut found: Option<String> = None;
        for line in self.headers().split("\r\n") {
            if line.starts_with([' ', '\t']) {
                if let Some(v) = found.as_mut() {
                    v.push(' ');
                    v.push_str(line.trim());
                }
                continue;
            }
            if found.is_some() {
                break;
            }
            if let Some((k, v)) = line.split_once(':') {
                if k.trim().eq_ignore_ascii_case(name) {
                    found = Some(v.trim().to_owned());
                }
            }
        }
        found
    }

    /// The body decoded from its `Content-Transfer-Encoding` (7bit, 8bit,
    /// quoted-printable or base64), with CRLF line ends.
    pub fn body(&self) -> String {
        let encoding = self
            .header("Content-Transfer-Encoding")
            .unwrap_or_default()
            .to_ascii_lowercase();
        let raw = self.raw_body();
        match encoding.as_str() {
            "quoted-printable" => decode_quoted_printable(raw),
            "base64" => {
                use base64::Engine;
                let compact: String = raw.chars().filter(|c| !c.is_whitespace()).collect();
                base64::engine::general_purpose::STANDARD
                    .decode(compact)
                    .map(|b| String::from_utf8_lossy(&b).into_owned())
                    .unwrap_or_else(|_| raw.to_owned())
            }
            _ => raw.to_owned(),
        }
    }
}

fn decode_quoted_printable(raw: &str) -> String {
    let bytes = raw.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'=' {
            if bytes[i + 1..].starts_with(b"\r\n") {
                i += 3; // soft line break
                continue;
            }
            if let Some(hex) = bytes.get(i + 1..i + 3) {
                if let Ok(b) = u8::from_str_radix(&String::from_utf8_lossy(hex), 16) {
                    out.push(b);
                    i += 3;
                    continue;
                }
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[derive(Default)]
struct State {
    /// Every message received, and whether `wait_for` handed it out.
    mails: Mutex<Vec<(ReceivedMail, bool)>>,
    arrived: Notify,
}

/// The SMTP server; stops when dropped.
pub struct SmtpSink {
    addr: SocketAddr,
    state: Arc<State>,
    task: JoinHandle<()>,
}

impl Drop for SmtpSink {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl SmtpSink {
    /// Starts a sink on 127.0.0.1 with a free port.
    pub async fn start() -> SmtpSink {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind the SMTP sink");
        let addr = listener.local_addr().expect("sink address");
        let state = Arc::new(State::default());
        let accept_state = Arc::clone(&state);
        let task = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let state = Arc::clone(&accept_state);
                tokio::spawn(async move {
                    // A client that goes away mid-session is no test failure.
                    let _ = session(stream, state).await;
                });
            }
        });
        SmtpSink { addr, state, task }
    }

    /// `smtp://127.0.0.1:PORT`, for `SmtpMailer::new` or `SMTP_URL`.
    pub fn url(&self) -> String {
        format!("smtp://{}", self.addr)
    }

    /// The socket address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Every message received so far, in order.
    pub fn received(&self) -> Vec<ReceivedMail> {
        self.state
            .mails
            .lock()
            .unwrap()
            .iter()
            .map(|(m, _)| m.clone())
            .collect()
    }

    /// The first message for `to` (case-insensitive) that was not handed out
    /// yet, waiting up to `timeout` for it to arrive. Each message is handed
    /// out once, so successive calls return successive mails.
    pub async fn wait_for(&self, to: &str, timeout: Duration) -> Option<ReceivedMail> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let notified = self.state.arrived.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            {
                let mut mails = self.state.mails.lock().unwrap();
                let hit = mails
                    .iter_mut()
                    .find(|(m, taken)| !*taken && m.to.iter().any(|r| r.eq_ignore_ascii_case(to)));
                if let Some((mail, taken)) = hit {
                    *taken = true;
                    return Some(mail.clone());
                }
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                return None;
            }
        }
    }
}

/// The address inside `<...>` (or the first word), without SMTP parameters.
fn path(arg: &str) -> String {
    let arg = arg.trim();
    match (arg.find('<'), arg.find('>')) {
        (Some(a), Some(b)) if a < b => arg[a + 1..b].to_owned(),
        _ => arg.split_whitespace().next().unwrap_or("").to_owned(),
    }
}

/// Reads one line (up to LF), at most `MAX_LINE` bytes; `None` at EOF.
async fn read_line<R: AsyncBufRead + Unpin>(
    r: &mut R,
    buf: &mut Vec<u8>,
) -> std::io::Result<Option<()>> {
    buf.clear();
    let n = (&mut *r)
        .take(MAX_LINE as u64)
        .read_until(b'\n', buf)
        .await?;
    if n == 0 {
        return Ok(None);
    }
    Ok(Some(()))
}

async fn session(stream: TcpStream, state: Arc<State>) -> std::io::Result<()> {
    let (r, mut w) = stream.into_split();
    let mut r = BufReader::new(r);
    w.write_all(b"220 sink.test ESMTP SmtpSink ready\r\n")
        .await?;
    let mut from: Option<String> = None;
    let mut rcpts: Vec<String> = Vec::new();
    let mut line = Vec::new();
    loop {
        if read_line(&mut r, &mut line).await?.is_none() {
            return Ok(());
        }
        let text = String::from_utf8_lossy(&line);
        let cmd = text.trim_end_matches(['\r', '\n']);
        let upper = cmd.to_ascii_uppercase();
        let verb = upper.split_whitespace().next().unwrap_or("");
        let reply: &[u8] = match verb {
            "EHLO" => {
                b"250-sink.test greets you\r\n250-8BITMIME\r\n250-SMTPUTF8\r\n250 SIZE 10485760\r\n"
            }
            "HELO" => b"250 sink.test\r\n",
            "MAIL" if upper.starts_with("MAIL FROM:") => {
                from = Some(path(&cmd["MAIL FROM:".len()..]));
                rcpts.clear();
                b"250 2.1.0 OK\r\n"
            }
            "RCPT" if upper.starts_with("RCPT TO:") => {
                if from.is_none() {
                    b"503 5.5.1 MAIL first\r\n"
                } else {
                    rcpts.push(path(&cmd["RCPT TO:".len()..]));
                    b"250 2.1.5 OK\r\n"
                }
            }
            "DATA" => {
                if from.is_none() || rcpts.is_empty() {
                    b"503 5.5.1 MAIL and RCPT first\r\n"
                } else {
                    w.write_all(b"354 End data with <CR><LF>.<CR><LF>\r\n")
                        .await?;
                    let mut data: Vec<u8> = Vec::new();
                    loop {
                        if read_line(&mut r, &mut line).await?.is_none() {
                            return Ok(());
                        }
                        let content = line.strip_suffix(b"\n").unwrap_or(&line);
                        let content = content.strip_suffix(b"\r").unwrap_or(content);
                        if content == b"." {
                            break;
                        }
                        // RFC 5321 §4.5.2: a leading dot was doubled by the client.
                        let content = content.strip_prefix(b".").unwrap_or(content);
                        if data.len() + content.len() + 2 > MAX_DATA {
                            w.write_all(b"552 5.3.4 Message too big\r\n").await?;
                            return Ok(());
                        }
                        data.extend_from_slice(content);
                        data.extend_from_slice(b"\r\n");
                    }
                    let mail = ReceivedMail {
                        from: from.take().unwrap_or_default(),
                        to: std::mem::take(&mut rcpts),
                        data: String::from_utf8_lossy(&data).into_owned(),
                    };
                    state.mails.lock().unwrap().push((mail, false));
                    state.arrived.notify_waiters();
                    b"250 2.0.0 OK queued\r\n"
                }
            }
            "RSET" => {
                from = None;
                rcpts.clear();
                b"250 2.0.0 OK\r\n"
            }
            "NOOP" => b"250 2.0.0 OK\r\n",
            "QUIT" => {
                w.write_all(b"221 2.0.0 Bye\r\n").await?;
                return Ok(());
            }
            _ => b"502 5.5.2 Command not implemented\r\n",
        };
        w.write_all(reply).await?;
    }
}
