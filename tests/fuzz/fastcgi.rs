//! The FastCGI record decoder and response parser, through `fastcgi::request` against a
//! fake server: what a server answers is outside input.

use crate::alloc::largest_allocation;
use fpmctl::fastcgi::{self, FastCgiError, Request};
use fpmctl::listen::ListenAddr;
use proptest::prelude::*;
use std::io::{Read, Write};
use std::os::unix::net::UnixListener;
use std::time::Duration;

const STDOUT: u8 = 6;
const STDERR: u8 = 7;
const END_REQUEST: u8 = 3;
/// The header of the empty `FCGI_STDIN` record that ends every request the client sends.
const END_OF_REQUEST: [u8; 8] = [1, 5, 0, 1, 0, 0, 0, 0];
/// The client's read buffer and the largest record, with room for bookkeeping.
const FIXED_ALLOWANCE: usize = 256 * 1024;

/// One record as a fake server sends it: any type, id, content and padding, and a
/// length field that may lie about the content.
#[derive(Debug, Clone)]
struct Rec {
    version: u8,
    kind: u8,
    id: u16,
    content: Vec<u8>,
    /// Added to the true length in the header (wrapping): a lying length field.
    len_skew: u16,
    pad: u8,
}

impl Rec {
    fn encode(&self, out: &mut Vec<u8>) {
        let len = (self.content.len() as u16).wrapping_add(self.len_skew);
        let [id_hi, id_lo] = self.id.to_be_bytes();
        let [len_hi, len_lo] = len.to_be_bytes();
        out.extend_from_slice(&[
            self.version,
            self.kind,
            id_hi,
            id_lo,
            len_hi,
            len_lo,
            self.pad,
            0,
        ]);
        out.extend_from_slice(&self.content);
        out.extend(std::iter::repeat_n(0xAA, self.pad as usize));
    }
}

fn end_request(app_status: u32, protocol_status: u8) -> Rec {
    let mut content = app_status.to_be_bytes().to_vec();
    content.extend_from_slice(&[protocol_status, 0, 0, 0]);
    Rec {
        version: 1,
        kind: END_REQUEST,
        id: 1,
        content,
        len_skew: 0,
        pad: 0,
    }
}

/// CGI output: sometimes well-formed headers, sometimes none, sometimes junk.
fn cgi_stdout() -> impl Strategy<Value = Vec<u8>> {
    let header = prop_oneof![
        Just("Content-Type: text/plain".to_string()),
        "Status: [0-9]{0,4}[ A-Za-z]{0,8}",
        "[A-Za-z-]{1,10}: [ -~]{0,20}",
        "[ \t][ -~]{0,10}",
        "[^\r\n]{0,20}",
    ];
    let sep = prop_oneof![Just("\r\n"), Just("\n")];
    (
        prop::collection::vec((header, sep.clone()), 0..5),
        prop::option::of(sep),
        prop::collection::vec(any::<u8>(), 0..64),
    )
        .prop_map(|(headers, blank, body)| {
            let mut out = Vec::new();
            for (h, s) in headers {
                out.extend_from_slice(h.as_bytes());
                out.extend_from_slice(s.as_bytes());
            }
            if let Some(s) = blank {
                out.extend_from_slice(s.as_bytes());
            }
            out.extend_from_slice(&body);
            out
        })
}

/// Well-formed records of every kind a server might send, mostly for our request id.
fn honest_record() -> impl Strategy<Value = Rec> {
    let kind = prop_oneof![
        4 => Just(STDOUT),
        2 => Just(STDERR),
        1 => Just(END_REQUEST),
        1 => any::<u8>(),
    ];
    let id = prop_oneof![8 => Just(1u16), 1 => Just(0u16), 1 => any::<u16>()];
    (
        kind,
        id,
        prop::collection::vec(any::<u8>(), 0..300),
        any::<u8>(),
    )
        .prop_map(|(kind, id, content, pad)| Rec {
            version: 1,
            kind,
            id,
            content,
            len_skew: 0,
            pad,
        })
}

/// Records whose header lies: a wrong version, or a length field larger or smaller than
/// the content that follows.
fn hostile_record() -> impl Strategy<Value = Rec> {
    (
        honest_record(),
        prop_oneof![3 => Just(1u8), 1 => any::<u8>()],
        prop_oneof![Just(0u16), Just(u16::MAX), any::<u16>()],
    )
        .prop_map(|(mut r, version, skew)| {
            r.version = version;
            r.len_skew = skew;
            r
        })
}

/// Serves one connection on a fresh unix socket: reads the request to its end, writes
/// `answer`, closes. Returns the address and the server thread.
fn serve(answer: Vec<u8>) -> (tempfile::TempDir, ListenAddr, std::thread::JoinHandle<()>) {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("fcgi.sock");
    let listener = UnixListener::bind(&path).expect("bind");
    let server = std::thread::spawn(move || {
        let Ok((mut s, _)) = listener.accept() else {
            return;
        };
        let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
        let mut got = Vec::new();
        let mut buf = [0u8; 4096];
        while !got.ends_with(&END_OF_REQUEST) {
            match s.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => got.extend_from_slice(&buf[..n]),
            }
        }
        let _ = s.write_all(&answer);
    });
    (dir, ListenAddr::Unix(path), server)
}

/// Sends a GET to a fake server answering `answer`; checks the allocation bound.
fn exchange(answer: Vec<u8>) -> Result<fastcgi::Response, FastCgiError> {
    let sent = answer.len();
    let (_dir, addr, server) = serve(answer);
    let (result, largest) = largest_allocation(|| {
        fastcgi::request(&addr, &Request::get("/x"), Duration::from_secs(10))
    });
    let _ = server.join();
    assert!(
        largest <= FIXED_ALLOWANCE + 4 * sent,
        "one allocation of {largest} bytes for an answer of {sent} bytes"
    );
    if let Err(FastCgiError::Timeout { .. }) = &result {
        panic!("the server closed the connection; the client must not wait for the deadline");
    }
    result
}

/// What the client must make of `records`: the stdout and stderr for our id up to the
/// first END_REQUEST for our id, or `None` when that record is missing or short.
fn model(records: &[Rec]) -> Option<(Vec<u8>, Vec<u8>, u32, u8)> {
    let (mut stdout, mut stderr) = (Vec::new(), Vec::new());
    for r in records {
        if r.id != 1 {
            continue;
        }
        match r.kind {
            STDOUT => stdout.extend_from_slice(&r.content),
            STDERR => stderr.extend_from_slice(&r.content),
            END_REQUEST => {
                let b = r.content.get(..5)?;
                let app = u32::from_be_bytes([b[0], b[1], b[2], b[3]]);
                return Some((stdout, stderr, app, b[4]));
            }
            _ => {}
        }
    }
    None
}

proptest! {
    #![proptest_config(crate::config(1))]

    /// Any bytes at all from the server: an error or a response, never a panic or a hang.
    #[test]
    fn random_answers_never_panic(answer in prop::collection::vec(any::<u8>(), 0..2048)) {
        let _ = exchange(answer);
    }

    /// Well-formed records (unknown types, management records, other ids, any padding,
    /// END_REQUEST anywhere or missing) decode to exactly what the model says.
    #[test]
    fn well_formed_records_decode_to_what_was_sent(
        records in prop::collection::vec(honest_record(), 0..8),
        stdout in cgi_stdout(),
        app_status in any::<u32>(),
        protocol_status in prop_oneof![4 => Just(0u8), 1 => any::<u8>()],
        end_at in any::<prop::sample::Index>(),
        with_end in prop::bool::weighted(0.9),
    ) {
        let mut records = records;
        records.insert(0, Rec { version: 1, kind: STDOUT, id: 1, content: stdout, len_skew: 0, pad: 3 });
        if with_end {
            let at = end_at.index(records.len() + 1);
            records.insert(at, end_request(app_status, protocol_status));
        }
        let mut answer = Vec::new();
        for r in &records {
            r.encode(&mut answer);
        }
        let result = exchange(answer);
        match (model(&records), result) {
            (Some((out, err, app, 0)), Ok(resp)) => {
                prop_assert_eq!(resp.stdout, out);
                prop_assert_eq!(resp.stderr, err);
                prop_assert_eq!(resp.app_status, app);
                prop_assert!((100..=999).contains(&resp.status));
            }
            // A good end, but CGI output that does not parse: a protocol error.
            (Some((_, _, _, 0)), Err(FastCgiError::Protocol { .. })) => {}
            (Some((_, _, _, _)), Err(FastCgiError::Protocol { .. })) => {}
            (None, Err(FastCgiError::Protocol { .. })) => {}
            (m, r) => prop_assert!(false, "model {:?}, got {:?}", m.map(|m| m.3), r.map(|r| r.status)),
        }
    }

    /// Records whose headers lie about their length or version, and answers cut short
    /// anywhere: an error or a response, bounded, never a panic.
    #[test]
    fn hostile_and_truncated_records_are_errors_not_panics(
        records in prop::collection::vec(hostile_record(), 0..6),
        cut in any::<prop::sample::Index>(),
    ) {
        let mut answer = Vec::new();
        for r in &records {
            r.encode(&mut answer);
        }
        end_request(0, 0).encode(&mut answer);
        let keep = cut.index(answer.len() + 1);
        answer.truncate(keep);
        let _ = exchange(answer);
    }

    /// The HTTP status is the three-digit first word of `Status:` (200 without one); any
    /// other `Status:` is a protocol error, never a guess.
    #[test]
    fn the_status_is_the_status_header_or_an_error(
        code in prop_oneof!["[0-9]{1,5}", "[0-9]{3}[a-zA-Z]{0,3}", "[ -~]{0,6}"],
        reason in "( [A-Za-z ]{0,12})?",
        with_status in prop::bool::weighted(0.9),
    ) {
        let mut stdout = b"Content-Type: text/plain\r\n".to_vec();
        if with_status {
            stdout.extend_from_slice(format!("Status: {code}{reason}\r\n").as_bytes());
        }
        stdout.extend_from_slice(b"\r\nbody");
        let mut answer = Vec::new();
        Rec { version: 1, kind: STDOUT, id: 1, content: stdout, len_skew: 0, pad: 0 }.encode(&mut answer);
        end_request(0, 0).encode(&mut answer);
        let first = format!("{code}{reason}");
        let first = first.split_whitespace().next().unwrap_or("");
        let want = if !with_status {
            Some(200)
        } else if first.len() == 3 && first.bytes().all(|b| b.is_ascii_digit()) && first >= "100" {
            first.parse::<u16>().ok()
        } else {
            None
        };
        match exchange(answer) {
            Ok(resp) => prop_assert_eq!(Some(resp.status), want),
            Err(FastCgiError::Protocol { .. }) => prop_assert_eq!(None, want),
            Err(e) => prop_assert!(false, "{}", e),
        }
    }

    /// The status page: whatever JSON-like body a pool answers, `status` returns an object
    /// or an error.
    #[test]
    fn status_pages_never_panic(body in prop_oneof![
        "[{}\\[\\]\":,\\\\ a-z0-9\t]{0,120}",
        r#"\{"pool":"[a-z"\\]{0,8}","active processes":[0-9]{1,3}(,"processes":\[\{"pid":1,"request uri":"[ -~]{0,20}"\}\])?\}?"#,
    ]) {
        let mut stdout = b"Content-Type: application/json\r\n\r\n".to_vec();
        stdout.extend_from_slice(body.as_bytes());
        let mut answer = Vec::new();
        for chunk in stdout.chunks(100) {
            Rec { version: 1, kind: STDOUT, id: 1, content: chunk.to_vec(), len_skew: 0, pad: 0 }
                .encode(&mut answer);
        }
        end_request(0, 0).encode(&mut answer);
        let (_dir, addr, server) = serve(answer);
        let result = fastcgi::status(&addr, "/status", Duration::from_secs(10));
        let _ = server.join();
        if let Ok(value) = result {
            prop_assert!(value.is_object());
        }
    }
}
