//! Connection limits of the real binary (issue "Hardening": idle and slow connections were
//! never closed, and 1,100 of them under `ulimit -n 1024` stopped the server answering).

#![allow(clippy::unwrap_used)]

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use xcore_tests::{Server, read_response};

/// Raises this process's own open-file limit: the test holds more sockets than the server
/// may.
fn raise_own_file_limit(wanted: u64) {
    use nix::sys::resource::{Resource, getrlimit, setrlimit};
    let (soft, hard) = getrlimit(Resource::RLIMIT_NOFILE).unwrap();
    if soft < wanted {
        setrlimit(Resource::RLIMIT_NOFILE, wanted.min(hard), hard).unwrap();
    }
}

/// `GET /health` on a new connection, which must be answered within a second.
fn health_within_a_second(server: &Server) -> u16 {
    let mut stream = TcpStream::connect(server.addr).unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(1))).unwrap();
    write!(stream, "GET /health HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n").unwrap();
    read_response(&mut stream).map(|response| response.status).unwrap_or(0)
}

#[test]
fn idle_and_slow_connections_cannot_starve_the_server() {
    raise_own_file_limit(4096);
    let server = Server::start_with_file_limit(&[("XCORE_SERVER__ACCESS_LOG", "false")], 1024);
    let mut attackers = Vec::new();
    for index in 0..1100 {
        let mut stream = TcpStream::connect(server.addr).unwrap();
        // Every tenth sends the start of a request head and never finishes it.
        if index % 10 == 0 {
            stream.write_all(b"GET /health HTTP/1.1\r\nhost: x\r\n").unwrap();
        }
        attackers.push(stream);
    }
    assert_eq!(health_within_a_second(&server), 200, "{}", server.output());
    assert_eq!(health_within_a_second(&server), 200);
    assert!(!server.output().contains("Too many open files"), "{}", server.output());
    drop(attackers);
}

#[test]
fn idle_and_kept_alive_connections_are_closed_after_the_idle_timeout() {
    let server = Server::start(&[("XCORE_SERVER__IDLE_TIMEOUT_SECS", "1")]);
    let mut idle = TcpStream::connect(server.addr).unwrap();
    let mut kept_alive = TcpStream::connect(server.addr).unwrap();
    write!(kept_alive, "GET /health HTTP/1.1\r\nhost: x\r\n\r\n").unwrap();
    for stream in [&mut idle, &mut kept_alive] {
        // A deadline well past the timeout, not a timing: the server must close first.
        stream.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let mut everything = Vec::new();
        let read = stream.read_to_end(&mut everything);
        assert!(read.is_ok(), "the server did not close the connection: {read:?}");
    }
    assert_eq!(health_within_a_second(&server), 200);
}
