//! Connecting under one deadline, sending the request and reading records until
//! `FCGI_END_REQUEST`.

use super::wire::Decoder;
use super::*;
pub(super) use crate::deadline::Deadline;

/// The time left before `deadline`, or `None` once it has passed. The deadline saturates,
/// so a huge timeout is simply a very long one.
fn time_left(deadline: &Deadline) -> Option<Duration> {
    let left = deadline.remaining();
    (!left.is_zero()).then_some(left)
}

pub(super) enum Conn {
    Unix(UnixStream),
    Tcp(TcpStream),
}

impl Conn {
    fn set_read_timeout(&self, d: Duration) -> io::Result<()> {
        match self {
            Conn::Unix(s) => s.set_read_timeout(Some(d)),
            Conn::Tcp(s) => s.set_read_timeout(Some(d)),
        }
    }

    fn set_write_timeout(&self, d: Duration) -> io::Result<()> {
        match self {
            Conn::Unix(s) => s.set_write_timeout(Some(d)),
            Conn::Tcp(s) => s.set_write_timeout(Some(d)),
        }
    }
}

impl Read for Conn {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Conn::Unix(s) => s.read(buf),
            Conn::Tcp(s) => s.read(buf),
        }
    }
}

impl Write for Conn {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Conn::Unix(s) => s.write(buf),
            Conn::Tcp(s) => s.write(buf),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

pub(super) fn is_timeout(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
    )
}

pub(super) fn is_hangup(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::BrokenPipe
            | io::ErrorKind::ConnectionReset
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::UnexpectedEof
    )
}

pub(super) fn timeout(addr: &str, phase: Phase) -> FastCgiError {
    FastCgiError::Timeout {
        addr: addr.to_string(),
        phase,
    }
}

pub(super) fn connect(
    addr: &ListenAddr,
    name: &str,
    deadline: &Deadline,
) -> Result<Conn, FastCgiError> {
    let connect_err = |source| FastCgiError::Connect {
        addr: name.to_string(),
        source,
    };
    match addr {
        ListenAddr::Unix(path) => connect_unix(path, name, deadline).map(Conn::Unix),
        ListenAddr::Tcp { .. } => {
            let candidates = addr.connect_addrs().map_err(connect_err)?;
            connect_tcp(&candidates, name, deadline).map(Conn::Tcp)
        }
    }
}

/// A unix stream connect blocks while the listener's backlog is full (every FPM worker
/// busy); the kernel bounds that wait by the socket's send timeout, so set it first.
pub(super) fn connect_unix(
    path: &Path,
    name: &str,
    deadline: &Deadline,
) -> Result<UnixStream, FastCgiError> {
    let connect_err = |e: nix::errno::Errno| FastCgiError::Connect {
        addr: name.to_string(),
        source: io::Error::from(e),
    };
    let sockaddr = UnixAddr::new(path).map_err(connect_err)?;
    loop {
        let left = time_left(deadline).ok_or_else(|| timeout(name, Phase::Connect))?;
        let fd = socket::socket(
            AddressFamily::Unix,
            SockType::Stream,
            SockFlag::SOCK_CLOEXEC,
            None,
        )
        .map_err(connect_err)?;
        socket::setsockopt(&fd, sockopt::SendTimeout, &timeval(left)).map_err(connect_err)?;
        match socket::connect(fd.as_raw_fd(), &sockaddr) {
            Ok(()) => return Ok(UnixStream::from(fd)),
            // A signal: start over with a fresh socket and the time that is left.
            Err(nix::errno::Errno::EINTR) => continue,
            Err(nix::errno::Errno::EAGAIN | nix::errno::Errno::EINPROGRESS) => {
                return Err(timeout(name, Phase::Connect));
            }
            Err(e) => return Err(connect_err(e)),
        }
    }
}

pub(super) fn timeval(d: Duration) -> TimeVal {
    let secs = d.as_secs().min(i32::MAX as u64);
    // Zero would mean "no timeout"; never round a short wait down to that.
    let micros = if secs == 0 {
        d.subsec_micros().max(1)
    } else {
        d.subsec_micros()
    };
    TimeVal::new(secs as _, micros as _)
}

pub(super) fn connect_tcp(
    candidates: &[SocketAddr],
    name: &str,
    deadline: &Deadline,
) -> Result<TcpStream, FastCgiError> {
    let mut failures: Vec<(SocketAddr, io::Error)> = Vec::new();
    for candidate in candidates {
        let left = time_left(deadline).ok_or_else(|| timeout(name, Phase::Connect))?;
        match TcpStream::connect_timeout(candidate, left) {
            Ok(stream) => {
                // One write per request, but no reason to let Nagle hold back its tail.
                let _ = stream.set_nodelay(true);
                return Ok(stream);
            }
            Err(e) => failures.push((*candidate, e)),
        }
    }
    if time_left(deadline).is_none() && failures.iter().any(|(_, e)| is_timeout(e)) {
        return Err(timeout(name, Phase::Connect));
    }
    let source = match failures.len() {
        0 => io::Error::new(
            io::ErrorKind::NotFound,
            "the host name resolved to no IPv4 address",
        ),
        1 if failures[0].0.to_string() == name => failures.remove(0).1,
        _ => {
            let kind = failures
                .last()
                .map(|(_, e)| e.kind())
                .unwrap_or(io::ErrorKind::Other);
            let all: Vec<String> = failures.iter().map(|(a, e)| format!("{a}: {e}")).collect();
            io::Error::new(kind, all.join("; "))
        }
    };
    Err(FastCgiError::Connect {
        addr: name.to_string(),
        source,
    })
}

/// Writes the whole request. If the server hangs up part way, returns how far it got so
/// the caller can still read an answer the server may have sent before closing.
pub(super) fn send(
    conn: &mut Conn,
    wire: &[u8],
    deadline: &Deadline,
    name: &str,
) -> Result<Option<(usize, io::Error)>, FastCgiError> {
    let io_err = |source| FastCgiError::Io {
        addr: name.to_string(),
        source,
    };
    let mut sent = 0;
    while sent < wire.len() {
        let left = time_left(deadline).ok_or_else(|| timeout(name, Phase::Send))?;
        conn.set_write_timeout(left).map_err(io_err)?;
        match conn.write(&wire[sent..]) {
            Ok(0) => return Err(io_err(io::ErrorKind::WriteZero.into())),
            Ok(n) => sent += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) if is_timeout(&e) => return Err(timeout(name, Phase::Send)),
            Err(e) if is_hangup(&e) => return Ok(Some((sent, e))),
            Err(e) => return Err(io_err(e)),
        }
    }
    Ok(None)
}

/// Reads records until `FCGI_END_REQUEST`; the CGI fields of the result are left empty.
pub(super) fn receive(
    conn: &mut Conn,
    deadline: &Deadline,
    name: &str,
) -> Result<Response, FastCgiError> {
    let io_err = |source| FastCgiError::Io {
        addr: name.to_string(),
        source,
    };
    let mut decoder = Decoder::default();
    let mut response = Response::default();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let left = time_left(deadline).ok_or_else(|| timeout(name, Phase::Receive))?;
        conn.set_read_timeout(left).map_err(io_err)?;
        let n = match conn.read(&mut buf) {
            Ok(0) => {
                return Err(protocol(
                    name,
                    closed_early(&decoder, &response, "closed the connection"),
                ));
            }
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) if is_timeout(&e) => return Err(timeout(name, Phase::Receive)),
            Err(e) if is_hangup(&e) => {
                return Err(protocol(
                    name,
                    closed_early(&decoder, &response, "reset the connection"),
                ));
            }
            Err(e) => return Err(io_err(e)),
        };
        decoder.push(&buf[..n]);
        while let Some(record) = decoder.next_record().map_err(|d| protocol(name, d))? {
            if record.request_id != REQUEST_ID {
                // Management records (id 0, e.g. FCGI_UNKNOWN_TYPE) or someone else's.
                continue;
            }
            match record.kind {
                TYPE_STDOUT => response.stdout.extend_from_slice(&record.content),
                TYPE_STDERR => response.stderr.extend_from_slice(&record.content),
                TYPE_END_REQUEST => {
                    let body: [u8; 5] = record
                        .content
                        .get(..5)
                        .and_then(|b| b.try_into().ok())
                        .ok_or_else(|| {
                            protocol(
                                name,
                                format!(
                                    "FCGI_END_REQUEST body is {} bytes, expected 8",
                                    record.content.len()
                                ),
                            )
                        })?;
                    response.app_status = u32::from_be_bytes([body[0], body[1], body[2], body[3]]);
                    response.protocol_status = body[4];
                    return Ok(response);
                }
                // Record types a responder never gets are skipped, as the spec asks.
                _ => {}
            }
            if response.stdout.len() + response.stderr.len() > MAX_RESPONSE {
                return Err(protocol(
                    name,
                    format!("response larger than {MAX_RESPONSE} bytes"),
                ));
            }
        }
    }
}

pub(super) fn closed_early(decoder: &Decoder, response: &Response, what: &str) -> String {
    let mut detail = format!(
        "the server {what} before FCGI_END_REQUEST ({} bytes of stdout",
        response.stdout.len()
    );
    if !decoder.buf.is_empty() {
        detail.push_str(&format!(
            ", {} bytes of an unfinished record",
            decoder.buf.len()
        ));
    }
    detail.push(')');
    detail
}

#[cfg(test)]
mod tests {
    use super::super::test_server::*;
    use super::*;
    use crate::listen::TcpHost;
    use std::net::{Ipv4Addr, TcpListener};
    use std::sync::mpsc;
    use std::thread;
    use std::time::Instant;

    #[test]
    fn a_full_exchange_with_records_split_and_unknown_types() {
        let (_dir, addr, server) = unix_server(|mut s| {
            let got = read_request(&mut s);
            assert_eq!(got.begin, [0, 1, 0, 0, 0, 0, 0, 0]);
            assert!(
                got.params
                    .contains(&("SCRIPT_NAME".into(), "/echo.php".into()))
            );
            assert_eq!(got.stdin, b"request body");
            let mut reply = Vec::new();
            // A management record (id 0) and a type no responder knows: both skipped.
            reply.extend(raw_record(11, 0, &[42, 0, 0, 0, 0, 0, 0, 0]));
            reply.extend(raw_record(42, REQUEST_ID, b"ignore me"));
            reply.extend(raw_record(
                TYPE_STDOUT,
                REQUEST_ID,
                b"Status: 201 Created\r\nX-Test: yes\r\n",
            ));
            reply.extend(raw_record(TYPE_STDERR, REQUEST_ID, b"a warning"));
            reply.extend(raw_record(TYPE_STDOUT, REQUEST_ID, b"\r\nhello"));
            reply.extend(raw_record(TYPE_STDOUT, REQUEST_ID, b""));
            reply.extend(end_request(7, FCGI_REQUEST_COMPLETE));
            // Dribble it out so records and headers arrive split across reads.
            for chunk in reply.chunks(3) {
                s.write_all(chunk).unwrap();
                thread::sleep(Duration::from_micros(200));
            }
        });
        let req = Request::post("/echo.php", "text/plain", "request body");
        let resp = request(&addr, &req, LONG).unwrap();
        server.join().unwrap();
        assert_eq!(resp.status, 201);
        assert_eq!(resp.header("x-test"), Some("yes"));
        assert_eq!(resp.body, b"hello");
        assert_eq!(resp.stderr, b"a warning");
        assert_eq!(resp.app_status, 7);
        assert_eq!(resp.protocol_status, FCGI_REQUEST_COMPLETE);
        assert_eq!(
            resp.stdout,
            b"Status: 201 Created\r\nX-Test: yes\r\n\r\nhello".to_vec()
        );
    }

    #[test]
    fn a_server_that_never_answers_times_out_within_the_deadline() {
        let (tx, rx) = mpsc::channel::<()>();
        let (_dir, addr, server) = unix_server(move |mut s| {
            read_request(&mut s);
            // Answer only if the client is still waiting long after its deadline.
            let released = rx.recv_timeout(LONG).is_ok();
            if !released {
                let mut reply = raw_record(TYPE_STDOUT, REQUEST_ID, b"\r\nlate");
                reply.extend(end_request(0, FCGI_REQUEST_COMPLETE));
                let _ = s.write_all(&reply);
            }
            released
        });
        let started = Instant::now();
        let err = request(&addr, &Request::get("/ping"), SHORT).unwrap_err();
        let took = started.elapsed();
        tx.send(()).unwrap();
        assert!(
            server.join().unwrap(),
            "the request returned only after the slow server answered"
        );
        assert!(
            matches!(
                err,
                FastCgiError::Timeout {
                    phase: Phase::Receive,
                    ..
                }
            ),
            "{err:?}"
        );
        assert!(took >= SHORT, "{took:?}");
        assert!(err.to_string().contains("fcgi.sock"), "{err}");
    }

    #[test]
    fn a_server_that_does_not_read_times_out_the_send() {
        let (tx, rx) = mpsc::channel::<()>();
        let (_dir, addr, server) = unix_server(move |mut s| {
            // Start reading only if the client is still sending long after its deadline.
            let released = rx.recv_timeout(LONG).is_ok();
            if !released {
                let _ = io::copy(&mut s, &mut io::sink());
            }
            released
        });
        let req = Request::post("/x.php", "application/octet-stream", vec![0u8; 16 << 20]);
        let err = request(&addr, &req, SHORT).unwrap_err();
        tx.send(()).unwrap();
        assert!(
            server.join().unwrap(),
            "the send returned only after the server started reading"
        );
        assert!(
            matches!(
                err,
                FastCgiError::Timeout {
                    phase: Phase::Send,
                    ..
                }
            ),
            "{err:?}"
        );
    }

    #[test]
    fn a_full_backlog_times_out_the_connect() {
        use nix::sys::socket::{Backlog, bind, listen};
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("full.sock");
        let listener = socket::socket(
            AddressFamily::Unix,
            SockType::Stream,
            SockFlag::SOCK_CLOEXEC,
            None,
        )
        .unwrap();
        let sockaddr = UnixAddr::new(&path).unwrap();
        bind(listener.as_raw_fd(), &sockaddr).unwrap();
        listen(&listener, Backlog::new(0).unwrap()).unwrap();
        // Never accept; fill the queue with non-blocking connects until the kernel says so.
        let mut queued = Vec::new();
        loop {
            let fd = socket::socket(
                AddressFamily::Unix,
                SockType::Stream,
                SockFlag::SOCK_NONBLOCK | SockFlag::SOCK_CLOEXEC,
                None,
            )
            .unwrap();
            match socket::connect(fd.as_raw_fd(), &sockaddr) {
                Ok(()) => queued.push(fd),
                Err(nix::errno::Errno::EAGAIN) => break,
                Err(e) => panic!("filling the backlog: {e}"),
            }
            assert!(queued.len() < 64, "the backlog never filled");
        }
        // Free the backlog only if the client is still connecting long after its deadline.
        let (tx, rx) = mpsc::channel::<()>();
        let listener = std::os::unix::net::UnixListener::from(listener);
        let drainer = thread::spawn(move || {
            let released = rx.recv_timeout(LONG).is_ok();
            if !released {
                for _ in 0..=queued.len() {
                    let _ = listener.accept();
                }
            }
            released
        });
        let started = Instant::now();
        let err = request(&ListenAddr::Unix(path), &Request::get("/ping"), SHORT).unwrap_err();
        let took = started.elapsed();
        tx.send(()).unwrap();
        assert!(
            drainer.join().unwrap(),
            "the connect returned only after the backlog was freed"
        );
        assert!(
            matches!(
                err,
                FastCgiError::Timeout {
                    phase: Phase::Connect,
                    ..
                }
            ),
            "{err:?}"
        );
        assert!(took >= SHORT, "{took:?}");
    }

    #[test]
    fn a_server_that_closes_early_is_a_protocol_error() {
        let (_dir, addr, server) = unix_server(|mut s| {
            read_request(&mut s);
            s.write_all(&raw_record(
                TYPE_STDOUT,
                REQUEST_ID,
                b"Content-Type: text/plain\r\n",
            ))
            .unwrap();
            s.write_all(&[VERSION_1, TYPE_STDOUT, 0]).unwrap();
        });
        let err = request(&addr, &Request::get("/ping"), LONG).unwrap_err();
        server.join().unwrap();
        match &err {
            FastCgiError::Protocol { detail, .. } => {
                assert!(detail.contains("before FCGI_END_REQUEST"), "{detail}");
                assert!(detail.contains("unfinished record"), "{detail}");
            }
            other => panic!("expected a protocol error, got {other:?}"),
        }
        assert!(!err.to_string().contains('\n'));
    }

    #[test]
    fn a_server_that_hangs_up_mid_request_is_a_protocol_error() {
        let (_dir, addr, server) = unix_server(drop);
        let req = Request::post("/x.php", "application/octet-stream", vec![0u8; 4 << 20]);
        let err = request(&addr, &req, LONG).unwrap_err();
        server.join().unwrap();
        match &err {
            FastCgiError::Protocol { detail, .. } => {
                assert!(detail.contains("stopped reading the request"), "{detail}")
            }
            other => panic!("expected a protocol error, got {other:?}"),
        }
    }

    #[test]
    fn a_refused_request_is_a_protocol_error() {
        let (_dir, addr, server) = unix_server(|mut s| {
            read_request(&mut s);
            s.write_all(&end_request(0, FCGI_OVERLOADED)).unwrap();
        });
        let err = request(&addr, &Request::get("/ping"), LONG).unwrap_err();
        server.join().unwrap();
        assert!(err.to_string().contains("FCGI_OVERLOADED"), "{err}");
    }

    #[test]
    fn a_short_end_request_is_a_protocol_error() {
        let (_dir, addr, server) = unix_server(|mut s| {
            read_request(&mut s);
            s.write_all(&raw_record(TYPE_END_REQUEST, REQUEST_ID, &[0, 0]))
                .unwrap();
        });
        let err = request(&addr, &Request::get("/ping"), LONG).unwrap_err();
        server.join().unwrap();
        assert!(err.to_string().contains("FCGI_END_REQUEST body"), "{err}");
    }

    #[test]
    fn ping_and_status_check_the_http_status() {
        let (_dir, addr, server) = unix_server(|mut s| {
            read_request(&mut s);
            let out = b"Status: 404 Not Found\r\nContent-type: text/html\r\n\r\nFile not found.\n";
            s.write_all(&raw_record(TYPE_STDOUT, REQUEST_ID, out))
                .unwrap();
            s.write_all(&end_request(0, 0)).unwrap();
        });
        let err = ping(&addr, "/ping", LONG).unwrap_err();
        server.join().unwrap();
        match &err {
            FastCgiError::Status { status, body, .. } => {
                assert_eq!(*status, 404);
                assert_eq!(body, "File not found.");
            }
            other => panic!("expected a status error, got {other:?}"),
        }
        assert!(err.to_string().contains("fcgi.sock"), "{err}");
    }

    #[test]
    fn tcp_works_and_a_refused_port_names_every_address_tried() {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
        let port = listener.local_addr().unwrap().port();
        let server = thread::spawn(move || {
            let (mut s, _) = listener.accept().unwrap();
            let got = read_request(&mut s);
            assert!(got.params.contains(&("SCRIPT_NAME".into(), "/ping".into())));
            s.write_all(&raw_record(
                TYPE_STDOUT,
                REQUEST_ID,
                b"Content-Type: text/plain\r\n\r\npong\n",
            ))
            .unwrap();
            s.write_all(&end_request(0, 0)).unwrap();
        });
        let addr = ListenAddr::Tcp {
            host: TcpHost::Ip(Ipv4Addr::LOCALHOST.into()),
            port,
        };
        assert_eq!(ping(&addr, "/ping", LONG).unwrap(), "pong");
        server.join().unwrap();

        // The listener is gone now: nothing on that port.
        match request(&addr, &Request::get("/ping"), LONG) {
            Err(err @ FastCgiError::Connect { .. }) => {
                let msg = err.to_string();
                assert!(msg.contains(&format!("127.0.0.1:{port}")), "{msg}");
            }
            other => panic!("expected a connect error, got {other:?}"),
        }
        // A bare port tries IPv4 then IPv6 loopback; both failures are reported.
        let any = ListenAddr::Tcp {
            host: TcpHost::Any,
            port,
        };
        let msg = request(&any, &Request::get("/ping"), LONG)
            .unwrap_err()
            .to_string();
        assert!(msg.contains(&format!("127.0.0.1:{port}:")), "{msg}");
        assert!(msg.contains(&format!("[::1]:{port}:")), "{msg}");
        assert!(!msg.contains('\n'));
    }

    #[test]
    fn a_missing_unix_socket_is_a_connect_error_naming_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("missing.sock");
        let err = request(
            &ListenAddr::Unix(path.clone()),
            &Request::get("/ping"),
            LONG,
        )
        .unwrap_err();
        assert!(matches!(err, FastCgiError::Connect { .. }), "{err:?}");
        assert!(
            err.to_string().contains(&path.display().to_string()),
            "{err}"
        );
        assert_eq!(err.addr(), path.display().to_string());
    }

    #[test]
    fn a_huge_timeout_is_a_long_wait_not_a_panic() {
        // Duration::MAX does not fit an Instant: the deadline saturates to "never".
        let (_dir, addr, server) = unix_server(|mut s| {
            read_request(&mut s);
            s.write_all(&raw_record(TYPE_STDOUT, 1, b"Status: 200 OK\r\n\r\npong"))
                .unwrap();
            s.write_all(&end_request(0, 0)).unwrap();
        });
        let resp = request(&addr, &Request::get("/ping"), Duration::MAX).unwrap();
        assert_eq!(resp.body, b"pong");
        server.join().unwrap();
    }

    #[test]
    fn a_zero_timeout_fails_fast() {
        let err = request(
            &ListenAddr::Unix("/nonexistent.sock".into()),
            &Request::get("/ping"),
            Duration::ZERO,
        )
        .unwrap_err();
        assert!(
            matches!(
                err,
                FastCgiError::Timeout {
                    phase: Phase::Connect,
                    ..
                }
            ),
            "{err:?}"
        );
    }
}
