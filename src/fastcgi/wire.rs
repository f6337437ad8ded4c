//! The FastCGI wire format: records (header, content, padding) and name-value pairs.

use super::*;

/// Padding that keeps a record 8-byte aligned, unless that would push content plus padding
/// past 65535, which FPM refuses for `FCGI_PARAMS`.
pub(super) fn padding_for(len: usize) -> usize {
    let pad = (8 - len % 8) % 8;
    if len + pad > MAX_CONTENT { 0 } else { pad }
}

/// Appends one record; `content` must not exceed 65535 bytes.
pub(super) fn encode_record(out: &mut Vec<u8>, kind: u8, content: &[u8]) {
    debug_assert!(content.len() <= MAX_CONTENT);
    let len = content.len() as u16;
    let pad = padding_for(content.len());
    let [id_hi, id_lo] = REQUEST_ID.to_be_bytes();
    let [len_hi, len_lo] = len.to_be_bytes();
    out.extend_from_slice(&[VERSION_1, kind, id_hi, id_lo, len_hi, len_lo, pad as u8, 0]);
    out.extend_from_slice(content);
    out.resize(out.len() + pad, 0);
}

/// Appends a name-value pair length: one byte below 128, else four with the top bit set.
pub(super) fn encode_length(out: &mut Vec<u8>, len: usize) -> Result<(), String> {
    if len < 0x80 {
        out.push(len as u8);
    } else if len <= 0x7fff_ffff {
        out.extend_from_slice(&(len as u32 | 0x8000_0000).to_be_bytes());
    } else {
        return Err(format!(
            "a parameter of {len} bytes is too long for FastCGI"
        ));
    }
    Ok(())
}

pub(super) fn encode_name_value(
    out: &mut Vec<u8>,
    name: &[u8],
    value: &[u8],
) -> Result<(), String> {
    encode_length(out, name.len())?;
    encode_length(out, value.len())?;
    out.extend_from_slice(name);
    out.extend_from_slice(value);
    Ok(())
}

/// The contents of the `FCGI_PARAMS` records: whole pairs packed into records of at most
/// 65535 bytes, because FPM decodes each record on its own.
pub(super) fn encode_params(params: &[(String, String)]) -> Result<Vec<Vec<u8>>, String> {
    let mut records = Vec::new();
    let mut current = Vec::new();
    for (name, value) in params {
        let mut pair = Vec::new();
        encode_name_value(&mut pair, name.as_bytes(), value.as_bytes())?;
        if pair.len() > MAX_CONTENT {
            return Err(format!(
                "parameter {name} takes {} bytes; FPM decodes each FCGI_PARAMS record on its own, \
                 so one name-value pair must fit in {MAX_CONTENT} bytes",
                pair.len()
            ));
        }
        if current.len() + pair.len() > MAX_CONTENT {
            records.push(std::mem::take(&mut current));
        }
        current.extend_from_slice(&pair);
    }
    if !current.is_empty() {
        records.push(current);
    }
    Ok(records)
}

/// Every byte of the request: BEGIN_REQUEST, PARAMS records, empty PARAMS, STDIN records,
/// empty STDIN.
pub(super) fn encode_request(req: &Request) -> Result<Vec<u8>, String> {
    let params = encode_params(&req.params())?;
    // BEGIN_REQUEST, the PARAMS records and their end, the STDIN records and their end;
    // each adds at most 8 header and 7 padding bytes to its content.
    let records = 3 + params.len() + req.body.len().div_ceil(MAX_CONTENT);
    let content = 8 + params.iter().map(Vec::len).sum::<usize>() + req.body.len();
    let mut out = Vec::with_capacity(content + records * 15);
    let [role_hi, role_lo] = ROLE_RESPONDER.to_be_bytes();
    // Flags 0: no FCGI_KEEP_CONN, the server closes after the request.
    encode_record(
        &mut out,
        TYPE_BEGIN_REQUEST,
        &[role_hi, role_lo, 0, 0, 0, 0, 0, 0],
    );
    for content in &params {
        encode_record(&mut out, TYPE_PARAMS, content);
    }
    encode_record(&mut out, TYPE_PARAMS, &[]);
    for chunk in req.body.chunks(MAX_CONTENT) {
        encode_record(&mut out, TYPE_STDIN, chunk);
    }
    encode_record(&mut out, TYPE_STDIN, &[]);
    Ok(out)
}

/// One record as read: type, request id, content (padding dropped).
#[derive(Debug, PartialEq, Eq)]
pub(super) struct Record {
    pub(super) kind: u8,
    pub(super) request_id: u16,
    pub(super) content: Vec<u8>,
}

/// Reassembles records from reads of any size.
#[derive(Default)]
pub(super) struct Decoder {
    pub(super) buf: Vec<u8>,
}

impl Decoder {
    pub(super) fn push(&mut self, bytes: &[u8]) {
        self.buf.extend_from_slice(bytes);
    }

    /// The next complete record, `None` if more bytes are needed.
    pub(super) fn next_record(&mut self) -> Result<Option<Record>, String> {
        let Some(header) = self.buf.get(..HEADER_LEN) else {
            return Ok(None);
        };
        if header[0] != VERSION_1 {
            let hint = if self.buf.starts_with(b"HTTP/") {
                "; this is an HTTP server, not FastCGI"
            } else {
                ""
            };
            return Err(format!(
                "not a FastCGI response: record version {} (expected 1){hint}",
                header[0]
            ));
        }
        let kind = header[1];
        let request_id = u16::from_be_bytes([header[2], header[3]]);
        let len = u16::from_be_bytes([header[4], header[5]]) as usize;
        let pad = header[6] as usize;
        let total = HEADER_LEN + len + pad;
        if self.buf.len() < total {
            return Ok(None);
        }
        let content = self.buf[HEADER_LEN..HEADER_LEN + len].to_vec();
        self.buf.drain(..total);
        Ok(Some(Record {
            kind,
            request_id,
            content,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::super::test_server::*;
    use super::*;

    #[test]
    fn lengths_use_one_byte_below_128_and_four_bytes_above() {
        let enc = |len| {
            let mut v = Vec::new();
            encode_length(&mut v, len).unwrap();
            v
        };
        assert_eq!(enc(0), [0]);
        assert_eq!(enc(127), [127]);
        assert_eq!(enc(128), [0x80, 0, 0, 128]);
        assert_eq!(enc(70_000), [0x80, 0x01, 0x11, 0x70]);
        assert_eq!(enc(0x7fff_ffff), [0xff, 0xff, 0xff, 0xff]);
        assert!(encode_length(&mut Vec::new(), 0x8000_0000).is_err());
    }

    #[test]
    fn name_value_pairs_round_trip_in_both_length_forms() {
        let long_name = "N".repeat(300);
        let long_value = "v".repeat(200);
        let mut bytes = Vec::new();
        encode_name_value(&mut bytes, b"SHORT", b"x").unwrap();
        encode_name_value(&mut bytes, b"EMPTY", b"").unwrap();
        encode_name_value(&mut bytes, long_name.as_bytes(), long_value.as_bytes()).unwrap();
        assert_eq!(&bytes[..8], b"\x05\x01SHORTx");
        assert_eq!(&bytes[8..10], [5, 0]);
        assert_eq!(&bytes[15..23], [0x80, 0, 1, 44, 0x80, 0, 0, 200]);
        let pairs = decode_name_values(&bytes).unwrap();
        assert_eq!(
            pairs,
            vec![
                (b"SHORT".to_vec(), b"x".to_vec()),
                (b"EMPTY".to_vec(), Vec::new()),
                (long_name.into_bytes(), long_value.into_bytes()),
            ]
        );
    }

    #[test]
    fn records_are_padded_to_eight_bytes_without_exceeding_65535() {
        let mut out = Vec::new();
        encode_record(&mut out, TYPE_STDIN, b"hello");
        assert_eq!(out, b"\x01\x05\x00\x01\x00\x05\x03\x00hello\0\0\0");
        assert_eq!(padding_for(0), 0);
        assert_eq!(padding_for(8), 0);
        assert_eq!(padding_for(65527), 1);
        assert_eq!(padding_for(65528), 0);
        // 65530 + 6 would be 65536: FPM rejects that, so no padding.
        assert_eq!(padding_for(65530), 0);
        assert_eq!(padding_for(65535), 0);
    }

    #[test]
    fn params_are_packed_into_records_of_whole_pairs() {
        let params: Vec<(String, String)> = (0..40)
            .map(|i| (format!("FPMCTL_P{i:03}"), "x".repeat(4000)))
            .collect();
        let records = encode_params(&params).unwrap();
        assert!(records.len() >= 3, "{} records", records.len());
        let mut all = Vec::new();
        for content in &records {
            assert!(content.len() + padding_for(content.len()) <= MAX_CONTENT);
            // Each record must decode on its own, as FPM decodes it.
            all.extend(decode_name_values(content).unwrap());
        }
        assert_eq!(all.len(), 40);
        assert_eq!(all[39].0, b"FPMCTL_P039");
    }

    #[test]
    fn a_pair_larger_than_one_record_is_refused_before_connecting() {
        let huge = vec![("X_HUGE".to_string(), "y".repeat(70_000))];
        let err = encode_params(&huge).unwrap_err();
        assert!(err.contains("X_HUGE") && err.contains("65535"), "{err}");
        // No listener at this path: the error must come before any connect attempt.
        let addr = ListenAddr::Unix("/nonexistent/fpmctl.sock".into());
        let req = Request::get("/x").with_param("X_HUGE", "y".repeat(70_000));
        match request(&addr, &req, SHORT) {
            Err(FastCgiError::Protocol { addr, detail }) => {
                assert_eq!(addr, "/nonexistent/fpmctl.sock");
                assert!(detail.contains("X_HUGE"), "{detail}");
            }
            other => panic!("expected a protocol error, got {other:?}"),
        }
    }

    #[test]
    fn a_request_is_begin_params_stdin_each_with_its_end_marker() {
        let body: Vec<u8> = (0..150_000u32).map(|i| (i % 251) as u8).collect();
        let req = Request::post("/echo.php?a=1", "application/octet-stream", body.clone());
        let wire = encode_request(&req).unwrap();
        let records = split_records(&wire);
        for (header, content) in &records {
            assert_eq!(header[0], VERSION_1);
            assert_eq!(u16::from_be_bytes([header[2], header[3]]), REQUEST_ID);
            assert!(content.len() + header[6] as usize <= 65536);
        }
        let kinds: Vec<(u8, usize)> = records.iter().map(|(h, c)| (h[1], c.len())).collect();
        assert_eq!(kinds[0], (TYPE_BEGIN_REQUEST, 8));
        // Role RESPONDER, flags 0 (the server closes the connection).
        assert_eq!(records[0].1, [0, 1, 0, 0, 0, 0, 0, 0]);
        assert_eq!(kinds[1].0, TYPE_PARAMS);
        assert_eq!(kinds[2], (TYPE_PARAMS, 0));
        assert_eq!(
            &kinds[3..],
            [
                (TYPE_STDIN, 65535),
                (TYPE_STDIN, 65535),
                (TYPE_STDIN, 150_000 - 2 * 65535),
                (TYPE_STDIN, 0)
            ]
        );
        let sent: Vec<u8> = records[3..].iter().flat_map(|(_, c)| c.clone()).collect();
        assert_eq!(sent, body);
    }

    #[test]
    fn the_decoder_reassembles_records_split_across_reads() {
        let mut stream = raw_record(TYPE_STDOUT, 1, b"Status: 201 Created\r\n\r\nhi");
        let mut padded = Vec::new();
        encode_record(&mut padded, TYPE_STDERR, b"warn");
        stream.extend_from_slice(&padded);
        stream.extend_from_slice(&end_request(0, 0));
        let mut decoder = Decoder::default();
        let mut records = Vec::new();
        for byte in &stream {
            decoder.push(std::slice::from_ref(byte));
            while let Some(r) = decoder.next_record().unwrap() {
                records.push(r);
            }
        }
        let kinds: Vec<u8> = records.iter().map(|r| r.kind).collect();
        assert_eq!(kinds, [TYPE_STDOUT, TYPE_STDERR, TYPE_END_REQUEST]);
        assert_eq!(records[1].content, b"warn");
        assert!(decoder.buf.is_empty());
    }

    #[test]
    fn the_decoder_recognises_an_http_server() {
        let mut decoder = Decoder::default();
        decoder.push(b"HTTP/1.1 400 Bad Request\r\n");
        let err = decoder.next_record().unwrap_err();
        assert!(err.contains("HTTP server"), "{err}");
    }
}
