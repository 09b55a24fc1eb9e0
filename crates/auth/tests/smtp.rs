//! The SMTP notifier delivers to a mail server: here a minimal one on loopback.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpListener;
use xcore_auth::Message;
use xcore_auth::notifier::{NotifierConfig, NotifierKind, SmtpConfig, SmtpSecurity};

/// Accepts one SMTP session and returns what it received after `DATA`, and the envelope.
async fn mail_server(listener: TcpListener) -> (String, Vec<String>) {
    let (socket, _) = listener.accept().await.unwrap();
    let (read, mut write) = socket.into_split();
    let mut lines = BufReader::new(read).lines();
    write.write_all(b"220 test.local ESMTP\r\n").await.unwrap();
    let (mut envelope, mut data) = (Vec::new(), String::new());
    while let Some(line) = lines.next_line().await.unwrap() {
        let verb = line.split(' ').next().unwrap_or("").to_uppercase();
        let reply: &[u8] = match verb.as_str() {
            "EHLO" | "HELO" => b"250 test.local\r\n",
            "MAIL" | "RCPT" => {
                envelope.push(line.clone());
                b"250 OK\r\n"
            }
            "DATA" => {
                write.write_all(b"354 go ahead\r\n").await.unwrap();
                while let Some(line) = lines.next_line().await.unwrap() {
                    if line == "." {
                        break;
                    }
                    data.push_str(&line);
                    data.push('\n');
                }
                write.write_all(b"250 queued\r\n").await.unwrap();
                return (data, envelope);
            }
            _ => b"250 OK\r\n",
        };
        write.write_all(reply).await.unwrap();
    }
    (data, envelope)
}

#[tokio::test]
async fn messages_reach_the_mail_server() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let server = tokio::spawn(mail_server(listener));
    let config = NotifierConfig {
        kind: NotifierKind::Smtp,
        smtp: SmtpConfig {
            host: "127.0.0.1".to_owned(),
            port: Some(port),
            security: SmtpSecurity::None,
            from: "xcore <no-reply@example.com>".to_owned(),
            ..SmtpConfig::default()
        },
    };
    let problems = xcore_core::config::problems(&config);
    assert!(problems.is_empty(), "{problems:?}");
    let notifier = config.notifier().unwrap();
    let message = Message {
        to: "ada@example.com".to_owned(),
        subject: "Your password reset code".to_owned(),
        body: "the code: abc123".to_owned(),
    };
    notifier.send(message).await.unwrap();
    let (data, envelope) = server.await.unwrap();
    assert_eq!(envelope, ["MAIL FROM:<no-reply@example.com>", "RCPT TO:<ada@example.com>"]);
    assert!(data.contains("Subject: Your password reset code"), "{data}");
    assert!(data.contains("the code: abc123"), "{data}");
}

#[tokio::test]
async fn an_unreachable_server_is_an_error_not_a_hang() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    drop(listener);
    let smtp = SmtpConfig {
        host: "127.0.0.1".to_owned(),
        port: Some(port),
        security: SmtpSecurity::None,
        from: "no-reply@example.com".to_owned(),
        timeout_secs: 2,
        ..SmtpConfig::default()
    };
    let notifier = NotifierConfig { kind: NotifierKind::Smtp, smtp }.notifier().unwrap();
    let message =
        Message { to: "ada@example.com".to_owned(), subject: "s".to_owned(), body: "b".to_owned() };
    assert!(notifier.send(message).await.is_err());
}

#[test]
fn smtp_settings_are_checked() {
    let config = NotifierConfig { kind: NotifierKind::Smtp, ..NotifierConfig::default() };
    let keys: Vec<String> =
        xcore_core::config::problems(&config).into_iter().map(|(key, _)| key).collect();
    assert_eq!(keys, ["smtp.host", "smtp.from"]);
    let default = NotifierConfig::default();
    assert!(xcore_core::config::problems(&default).is_empty(), "the log notifier needs nothing");
}
