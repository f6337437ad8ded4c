//! The server side of the protocol, for the unit tests of this module.

use super::wire::Decoder;
use super::*;
use std::io::Read;
use std::os::unix::net::{UnixListener, UnixStream};
use std::thread;

pub(super) fn read_length(bytes: &mut &[u8]) -> Result<usize, String> {
    let first = *bytes.first().ok_or("truncated length")?;
    if first < 0x80 {
        *bytes = &bytes[1..];
        return Ok(first as usize);
    }
    let four: [u8; 4] = bytes
        .get(..4)
        .and_then(|b| b.try_into().ok())
        .ok_or("truncated 4-byte length")?;
    *bytes = &bytes[4..];
    Ok((u32::from_be_bytes(four) & 0x7fff_ffff) as usize)
}

pub(super) type Pair = (Vec<u8>, Vec<u8>);

/// Decodes name-value pairs the way FPM does: only whole pairs within `bytes`.
pub(super) fn decode_name_values(mut bytes: &[u8]) -> Result<Vec<Pair>, String> {
    let mut pairs = Vec::new();
    while !bytes.is_empty() {
        let name_len = read_length(&mut bytes)?;
        let value_len = read_length(&mut bytes)?;
        if bytes.len() < name_len + value_len {
            return Err("pair runs past the end of the record".into());
        }
        let (name, rest) = bytes.split_at(name_len);
        let (value, rest) = rest.split_at(value_len);
        pairs.push((name.to_vec(), value.to_vec()));
        bytes = rest;
    }
    Ok(pairs)
}

/// Splits encoded bytes into (header, content) without any reassembly logic.
pub(super) fn split_records(mut bytes: &[u8]) -> Vec<([u8; 8], Vec<u8>)> {
    let mut out = Vec::new();
    while !bytes.is_empty() {
        let header: [u8; 8] = bytes[..8].try_into().unwrap();
        let len = u16::from_be_bytes([header[4], header[5]]) as usize;
        let pad = header[6] as usize;
        out.push((header, bytes[8..8 + len].to_vec()));
        bytes = &bytes[8 + len + pad..];
    }
    out
}

pub(super) fn raw_record(kind: u8, id: u16, content: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    let [id_hi, id_lo] = id.to_be_bytes();
    let [len_hi, len_lo] = (content.len() as u16).to_be_bytes();
    out.extend_from_slice(&[VERSION_1, kind, id_hi, id_lo, len_hi, len_lo, 0, 0]);
    out.extend_from_slice(content);
    out
}

pub(super) fn end_request(app_status: u32, protocol_status: u8) -> Vec<u8> {
    let mut body = app_status.to_be_bytes().to_vec();
    body.extend_from_slice(&[protocol_status, 0, 0, 0]);
    raw_record(TYPE_END_REQUEST, REQUEST_ID, &body)
}

pub(super) struct Received {
    pub(super) begin: Vec<u8>,
    pub(super) params: Vec<(String, String)>,
    pub(super) stdin: Vec<u8>,
}

/// Reads one request up to its empty FCGI_STDIN, checking FPM's PARAMS rules.
pub(super) fn read_request(stream: &mut impl Read) -> Received {
    let mut decoder = Decoder::default();
    let mut got = Received {
        begin: Vec::new(),
        params: Vec::new(),
        stdin: Vec::new(),
    };
    let mut buf = [0u8; 4096];
    loop {
        while let Some(rec) = decoder.next_record().unwrap() {
            match rec.kind {
                TYPE_BEGIN_REQUEST => got.begin = rec.content,
                TYPE_PARAMS => {
                    for (n, v) in decode_name_values(&rec.content).unwrap() {
                        got.params
                            .push((String::from_utf8(n).unwrap(), String::from_utf8(v).unwrap()));
                    }
                }
                TYPE_STDIN if rec.content.is_empty() => return got,
                TYPE_STDIN => got.stdin.extend_from_slice(&rec.content),
                other => panic!("unexpected record type {other}"),
            }
        }
        let n = stream.read(&mut buf).unwrap();
        assert!(n > 0, "client closed before the end of the request");
        decoder.push(&buf[..n]);
    }
}

pub(super) fn unix_server<R: Send + 'static>(
    handler: impl FnOnce(UnixStream) -> R + Send + 'static,
) -> (tempfile::TempDir, ListenAddr, thread::JoinHandle<R>) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("fcgi.sock");
    let listener = UnixListener::bind(&path).unwrap();
    let handle = thread::spawn(move || {
        let (stream, _) = listener.accept().unwrap();
        handler(stream)
    });
    (dir, ListenAddr::Unix(path), handle)
}

pub(super) const SHORT: Duration = Duration::from_millis(300);
pub(super) const LONG: Duration = Duration::from_secs(5);
