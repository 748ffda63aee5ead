//! Mailers against a real SMTP peer (the loopback `SmtpSink`).

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use meetinity_auth::mail::{LogMailer, Mail, Mailer, SmtpMailer};
use meetinity_auth::ErrorKind;

use crate::smtp_sink::SmtpSink;

const FROM: &str = "Meetinity <no-reply@meetinity.test>";
const WAIT: Duration = Duration::from_secs(10);

fn mail(to: &str, text: &str) -> Mail {
    Mail {
        to: to.to_owned(),
        subject: "Verify your email".to_owned(),
        text: text.to_owned(),
    }
}

/// A loopback port with nothing listening.
async fn closed_port() -> u16 {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = l.local_addr().unwrap().port();
    drop(l);
    port
}

#[tokio::test]
async fn smtp_mailer_delivers_to_the_sink() {
    let sink = SmtpSink::start().await;
    let mailer = SmtpMailer::new(&sink.url(), FROM, Duration::from_secs(5)).unwrap();
    let text = "Hello Alice,\n\nOpen https://app.meetinity.test/verify?token=abc-DEF_123 to verify.\n.\n..dots stay\n";
    mailer.send(&mail("alice@example.com", text)).await.unwrap();

    let got = sink
        .wait_for("alice@example.com", WAIT)
        .await
        .expect("mail delivered");
    assert_eq!(got.from, "no-reply@meetinity.test");
    assert_eq!(got.to, vec!["alice@example.com".to_owned()]);
    assert_eq!(got.header("Subject").as_deref(), Some("Verify your email"));
    assert!(got
        .header("From")
        .unwrap()
        .contains("no-reply@meetinity.test"));
    assert!(got.header("To").unwrap().contains("alice@example.com"));
    let body = got.body();
    assert!(
        body.contains("https://app.meetinity.test/verify?token=abc-DEF_123"),
        "{body}"
    );
    // Lines made of dots survive SMTP's dot-stuffing both ways.
    assert!(body.contains("\r\n.\r\n..dots stay"), "{body:?}");
    assert_eq!(mailer.failures(), 0);
}

#[tokio::test]
async fn several_mails_reach_their_recipients_in_order() {
    let sink = SmtpSink::start().await;
    let mailer = SmtpMailer::new(&sink.url(), FROM, Duration::from_secs(5)).unwrap();
    for (to, n) in [
        ("bob@example.com", 1),
        ("carol@example.com", 2),
        ("bob@example.com", 3),
    ] {
        mailer
            .send(&mail(to, &format!("mail number {n}")))
            .await
            .unwrap();
    }
    let first = sink.wait_for("BOB@example.com", WAIT).await.unwrap();
    let second = sink.wait_for("bob@example.com", WAIT).await.unwrap();
    assert!(first.body().contains("mail number 1"));
    assert!(second.body().contains("mail number 3"));
    assert!(sink
        .wait_for("carol@example.com", WAIT)
        .await
        .unwrap()
        .body()
        .contains("mail number 2"));
    assert!(sink
        .wait_for("bob@example.com", Duration::from_millis(100))
        .await
        .is_none());
    assert_eq!(sink.received().len(), 3);
}

#[tokio::test]
async fn non_ascii_mail_is_delivered_and_decodable() {
    let sink = SmtpSink::start().await;
    let mailer = SmtpMailer::new(&sink.url(), FROM, Duration::from_secs(5)).unwrap();
    let text = "Bonjour Zoé, réinitialisez votre mot de passe : https://app.meetinity.test/reset?token=x1y2\n";
    mailer.send(&mail("zoe@example.com", text)).await.unwrap();
    let got = sink.wait_for("zoe@example.com", WAIT).await.unwrap();
    let body = got.body();
    assert!(body.contains("Zoé"), "{body}");
    assert!(
        body.contains("https://app.meetinity.test/reset?token=x1y2"),
        "{body}"
    );
}

#[tokio::test]
async fn header_injection_through_the_subject_is_neutralised() {
    let sink = SmtpSink::start().await;
    let mailer = SmtpMailer::new(&sink.url(), FROM, Duration::from_secs(5)).unwrap();
    let m = Mail {
        to: "grace@example.com".to_owned(),
        subject: "Hello\r\nBcc: mallory@example.com\r\n\r\nforged body".to_owned(),
        text: "real body".to_owned(),
    };
    mailer.send(&m).await.unwrap();
    let got = sink.wait_for("grace@example.com", WAIT).await.unwrap();
    assert_eq!(got.to, vec!["grace@example.com".to_owned()]);
    assert!(got.header("Bcc").is_none(), "{}", got.data);
    assert!(got.body().contains("real body"));
    assert!(!got.body().contains("forged body"), "{}", got.data);
}

#[tokio::test]
async fn closed_port_is_unavailable_quickly_and_counted() {
    let port = closed_port().await;
    let url = format!("smtp://mailer:hunter2-smtp-pass@127.0.0.1:{port}");
    let mailer = SmtpMailer::new(&url, FROM, Duration::from_secs(5)).unwrap();
    let started = Instant::now();
    let err = mailer
        .send(&mail("dave@example.com", "hi"))
        .await
        .unwrap_err();
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(err.kind(), ErrorKind::Unavailable);
    assert!(!err.to_string().contains("hunter2"), "{err}");
    assert_eq!(mailer.failures(), 1);
    let err = mailer
        .send(&mail("dave@example.com", "hi again"))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Unavailable);
    assert_eq!(mailer.failures(), 2);
}

#[tokio::test]
async fn required_starttls_is_never_downgraded_to_plain_text() {
    // The sink offers no STARTTLS: with `?tls=required` nothing may be sent.
    let sink = SmtpSink::start().await;
    let url = format!("smtp://{}?tls=required", sink.addr());
    let mailer = SmtpMailer::new(&url, FROM, Duration::from_secs(5)).unwrap();
    let err = mailer
        .send(&mail("heidi@example.com", "secret link"))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Unavailable);
    assert_eq!(mailer.failures(), 1);
    assert!(sink.received().is_empty());
}

#[tokio::test]
async fn silent_server_times_out_as_unavailable() {
    // Accepts the connection but never greets.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("smtp://{}", listener.local_addr().unwrap());
    let hold = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((s, _)) = listener.accept().await {
            held.push(s);
        }
    });
    let mailer = SmtpMailer::new(&url, FROM, Duration::from_millis(300)).unwrap();
    let started = Instant::now();
    let err = mailer
        .send(&mail("erin@example.com", "hi"))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Unavailable);
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(mailer.failures(), 1);
    hold.abort();
}

#[tokio::test]
async fn bad_recipient_is_a_validation_error_and_counted() {
    let sink = SmtpSink::start().await;
    let mailer = SmtpMailer::new(&sink.url(), FROM, Duration::from_secs(5)).unwrap();
    let err = mailer
        .send(&mail("not an address", "hi"))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Validation);
    assert_eq!(mailer.failures(), 1);
    assert!(sink.received().is_empty());
}

#[tokio::test]
async fn configuration_errors_and_redacted_debug() {
    let mailer = SmtpMailer::new(
        "smtps://mailer:hunter2-smtp-pass@smtp.meetinity.invalid:465",
        FROM,
        Duration::from_secs(5),
    )
    .unwrap();
    let debug = format!("{mailer:?}");
    assert!(!debug.contains("hunter2"), "{debug}");
    assert!(
        debug.contains("smtps://smtp.meetinity.invalid:465"),
        "{debug}"
    );
    // STARTTLS form is accepted.
    SmtpMailer::new(
        "smtp://u:p@smtp.meetinity.invalid:587?tls=required",
        FROM,
        Duration::from_secs(5),
    )
    .unwrap();

    for url in [
        "http://smtp.meetinity.invalid",
        "not a url",
        "smtp://u:p@smtp.meetinity.invalid?tls=bogus",
    ] {
        let err = SmtpMailer::new(url, FROM, Duration::from_secs(5)).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Config, "{url}");
        assert!(!err.to_string().contains("u:p@"), "{err}");
    }
    let err = SmtpMailer::new(
        "smtp://127.0.0.1:2525",
        "not a mailbox",
        Duration::from_secs(5),
    )
    .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Config);

    let m = mail("a@example.com", "https://app.test/reset?token=SECRET-TOKEN");
    assert!(!format!("{m:?}").contains("SECRET-TOKEN"));
}

/// Collects the fields of tracing events.
#[derive(Clone, Default)]
struct Capture(Arc<Mutex<Vec<(tracing::Level, String)>>>);

impl tracing::Subscriber for Capture {
    fn enabled(&self, _: &tracing::Metadata<'_>) -> bool {
        true
    }
    fn new_span(&self, _: &tracing::span::Attributes<'_>) -> tracing::span::Id {
        tracing::span::Id::from_u64(1)
    }
    fn record(&self, _: &tracing::span::Id, _: &tracing::span::Record<'_>) {}
    fn record_follows_from(&self, _: &tracing::span::Id, _: &tracing::span::Id) {}
    fn event(&self, event: &tracing::Event<'_>) {
        struct Fields(String);
        impl tracing::field::Visit for Fields {
            fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
                self.0.push_str(&format!("{}={:?} ", field.name(), value));
            }
        }
        let mut fields = Fields(String::new());
        event.record(&mut fields);
        self.0
            .lock()
            .unwrap()
            .push((*event.metadata().level(), fields.0));
    }
    fn enter(&self, _: &tracing::span::Id) {}
    fn exit(&self, _: &tracing::span::Id) {}
}

#[tokio::test(flavor = "current_thread")]
async fn log_mailer_logs_the_whole_mail_at_info() {
    let capture = Capture::default();
    let _guard = tracing::subscriber::set_default(capture.clone());
    let mailer = LogMailer::new();
    mailer
        .send(&mail(
            "frank@example.com",
            "Reset: https://app.test/reset?token=tok-123",
        ))
        .await
        .unwrap();
    let events = capture.0.lock().unwrap().clone();
    let (level, fields) = events
        .iter()
        .find(|(_, f)| f.contains("frank@example.com"))
        .expect("the mail is logged");
    assert_eq!(*level, tracing::Level::INFO);
    assert!(fields.contains("Verify your email"), "{fields}");
    assert!(
        fields.contains("https://app.test/reset?token=tok-123"),
        "{fields}"
    );
    assert_eq!(mailer.failures(), 0);
}
