//! Alert webhooks over HTTPS (issue 11, item 5), against a local TLS server with a certificate
//! generated here: the notification arrives when the configured root signs the server's
//! certificate, a failed attempt is retried with backoff, a certificate nobody vouches for is
//! refused, and the queue in front of the delivery thread is bounded, its drops counted. Its own
//! test binary: `init` and the delivery counters are process-wide.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::sync::mpsc::{channel, Receiver};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use perfmon_runtime::alerts::{
    deliver, delivery_stats, AlertState, DeliveryStats, Notification, Severity, Sinks,
    DELIVERY_QUEUE,
};
use perfmon_runtime::{init, Config};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};

/// A self-signed certificate for `localhost`: (PEM, DER, PKCS#8 key).
fn certificate() -> (String, Vec<u8>, Vec<u8>) {
    let c = rcgen::generate_simple_self_signed(vec!["localhost".into()]).expect("a certificate");
    (
        c.cert.pem(),
        c.cert.der().to_vec(),
        c.key_pair.serialize_der(),
    )
}

/// An HTTPS server on 127.0.0.1 answering the n-th request with `answers[n]` (200 after them);
/// every request's body goes to the receiver.
fn https_server(cert: Vec<u8>, key: Vec<u8>, answers: Vec<u16>) -> (u16, Receiver<String>) {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("TLS versions")
        .with_no_client_auth()
        .with_single_cert(
            vec![CertificateDer::from(cert)],
            PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key)),
        )
        .expect("server config");
    let config = Arc::new(config);
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let (tx, rx) = channel();
    std::thread::spawn(move || {
        for (n, stream) in listener.incoming().enumerate() {
            let Ok(stream) = stream else { continue };
            let conn = rustls::ServerConnection::new(config.clone()).expect("connection");
            let mut tls = rustls::StreamOwned::new(conn, stream);
            let mut reader = BufReader::new(&mut tls);
            let mut length = 0;
            let mut line = String::new();
            // a client that refuses the certificate ends the handshake here: no request
            loop {
                line.clear();
                if reader.read_line(&mut line).unwrap_or(0) == 0 {
                    break;
                }
                if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                    length = v.trim().parse().unwrap_or(0);
                }
                if line == "\r\n" {
                    break;
                }
            }
            if line != "\r\n" {
                continue;
            }
            let mut body = vec![0; length];
            if reader.read_exact(&mut body).is_err() {
                continue;
            }
            let _ = tx.send(String::from_utf8_lossy(&body).into_owned());
            let code = answers.get(n).copied().unwrap_or(200);
            let _ = write!(
                tls,
                "HTTP/1.1 {code} X\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
            );
            let _ = tls.flush();
            tls.conn.send_close_notify();
            let _ = tls.flush();
        }
    });
    (port, rx)
}

fn notification(rule: &str) -> Notification {
    Notification {
        rule: rule.into(),
        key: String::new(),
        severity: Severity::Critical,
        state: AlertState::Firing,
        value: 7.5,
        since: SystemTime::now(),
        at: SystemTime::now(),
        message: "error rate 7.5% over 5%".into(),
    }
}

fn webhook(url: String) -> Sinks {
    Sinks {
        webhook: Some(url),
        ..Sinks::default()
    }
}

/// Waits (polling, 30 s at most) until the delivery counters satisfy `done`.
fn stats_until(what: &str, done: impl Fn(&DeliveryStats) -> bool) -> DeliveryStats {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let s = delivery_stats();
        if done(&s) {
            return s;
        }
        assert!(
            Instant::now() < deadline,
            "gave up waiting for {what}: {s:?}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_webhooks_verify_retry_and_queue_within_bounds() {
    let (pem, der, key) = certificate();
    let (port, bodies) = https_server(der, key, vec![503]);
    // a malformed root is refused at init, by name
    let err = init(Config::builder().tls_root_certificates("not a pem").build())
        .await
        .expect_err("refused");
    assert!(err.to_string().contains("tls_root_certificates"), "{err}");
    let _pm = init(
        Config::builder()
            .tls_root_certificates(pem.clone())
            .alert_webhook(format!("https://localhost:{port}/hooks/alerts"))
            .no_alerts()
            .build(),
    )
    .await
    .expect("init");

    // the server trusts nobody but the root we configured; it answers 503 first: a retry
    let url = format!("https://localhost:{port}/hooks/alerts");
    deliver(&notification("high-error-rate"), &webhook(url.clone()));
    let first = bodies
        .recv_timeout(Duration::from_secs(20))
        .expect("the first attempt arrived over TLS");
    let second = bodies
        .recv_timeout(Duration::from_secs(20))
        .expect("the retry arrived");
    assert_eq!(first, second, "the retry sends the same notification");
    let json: serde_json::Value = serde_json::from_str(&first).expect("JSON");
    assert_eq!(json["rule"], "high-error-rate");
    assert_eq!(json["state"], "firing");
    let s = stats_until("the delivery", |s| s.sent == 1);
    assert_eq!((s.failed, s.dropped, s.retries), (0, 0, 1), "{s:?}");

    // a server whose certificate no configured root signed: refused before any request
    let (_, other_der, other_key) = certificate();
    let (other_port, other_bodies) = https_server(other_der, other_key, vec![]);
    deliver(
        &notification("unknown-issuer"),
        &webhook(format!("https://localhost:{other_port}/hooks/alerts")),
    );
    let s = stats_until("the refusal", |s| s.failed == 1);
    assert_eq!(s.sent, 1);
    assert!(
        other_bodies.try_recv().is_err(),
        "no request reached a server we could not verify"
    );

    // a webhook that accepts connections and never answers holds the delivery thread (5 s an
    // attempt, 3 tries); meanwhile the queue takes DELIVERY_QUEUE notifications and drops, and
    // counts, the rest
    let hole = TcpListener::bind("127.0.0.1:0").expect("bind");
    let hole_url = format!(
        "https://localhost:{}/hooks",
        hole.local_addr().expect("addr").port()
    );
    let held = std::thread::spawn(move || {
        let mut kept = Vec::new();
        for s in hole.incoming().take(1) {
            kept.push(s);
        }
        std::thread::sleep(Duration::from_secs(60));
        drop(kept);
    });
    deliver(&notification("stuck"), &webhook(hole_url.clone()));
    stats_until("the delivery thread to take it", |s| s.queued == 0);
    let extra = 40;
    for _ in 0..DELIVERY_QUEUE + extra {
        deliver(&notification("flood"), &webhook(hole_url.clone()));
    }
    let s = delivery_stats();
    assert_eq!(s.queued, DELIVERY_QUEUE as u64, "{s:?}");
    assert_eq!(s.dropped, extra as u64, "{s:?}");
    drop(held);
}
