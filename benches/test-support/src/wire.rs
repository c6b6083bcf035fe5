//! Owns what tests put on the wire: OpenRTB request and response bodies, a 200 JSON answer,
//! and the chunked and gzip encodings.

use std::io::Write;

/// A valid one-impression banner request: `at` auction type, `tmax` ms, `floor` CPM.
pub fn bid_request(id: &str, at: u8, tmax: u32, floor: f64) -> Vec<u8> {
    format!(
        r#"{{"id":"{id}","at":{at},"tmax":{tmax},"imp":[{{"id":"1","banner":{{"w":300,"h":250}},"bidfloor":{floor}}}],"site":{{"id":"s"}}}}"#
    )
    .into_bytes()
}

/// One bid, as a fake DSP answers it.
#[derive(Clone, Copy, Debug, Default)]
pub struct Bid<'a> {
    /// Seat; also names the bid (`b-<seat>`) and the creative.
    pub seat: &'a str,
    /// The price as it goes into the JSON, so invalid numbers (`NaN`, `1e400`, `"100"`) can
    /// be sent.
    pub price: &'a str,
    /// The impression id as a JSON string; default: the request's first impression.
    pub impid: Option<&'a str>,
    /// Response currency; default: none (the auction's).
    pub cur: Option<&'a str>,
    /// Win-notice URL.
    pub nurl: Option<&'a str>,
}

impl Bid<'_> {
    /// The bid response body answering `request` with this one bid.
    pub fn response_to(&self, request: &serde_json::Value) -> String {
        let impid = self.impid.map_or_else(
            || request["imp"][0]["id"].to_string(),
            |i| format!("\"{i}\""),
        );
        let cur = self
            .cur
            .map_or_else(String::new, |c| format!(r#","cur":"{c}""#));
        let nurl = self
            .nurl
            .map_or_else(String::new, |u| format!(r#","nurl":"{u}""#));
        let (seat, price) = (self.seat, self.price);
        format!(
            r#"{{"id":{},"seatbid":[{{"seat":"{seat}","bid":[{{"id":"b-{seat}","impid":{impid},"price":{price},"adm":"<a>{seat}</a>"{nurl}}}]}}]{cur}}}"#,
            request["id"]
        )
    }
}

/// A `200 OK` JSON answer with a content-length and `extra_headers` (each ending in CRLF).
pub fn ok_json(body: &str, extra_headers: &str) -> Vec<u8> {
    format!(
        "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\n{extra_headers}\r\n{body}",
        body.len()
    )
    .into_bytes()
}

/// `body` in the chunked transfer coding, `piece` bytes a chunk, with the last chunk.
pub fn chunked(body: &[u8], piece: usize) -> Vec<u8> {
    let mut out = Vec::new();
    for c in body.chunks(piece) {
        out.extend_from_slice(format!("{:x}\r\n", c.len()).as_bytes());
        out.extend_from_slice(c);
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"0\r\n\r\n");
    out
}

/// The body of a message in the chunked transfer coding (as ClickHouse and Prometheus stream
/// larger answers): the chunks' data, up to the last chunk. Panics on a malformed size line.
pub fn unchunked(mut raw: &[u8]) -> Vec<u8> {
    let mut body = Vec::new();
    while let Some(line_end) = raw.windows(2).position(|w| w == b"\r\n") {
        let size_text = String::from_utf8_lossy(&raw[..line_end]);
        let size = usize::from_str_radix(size_text.split(';').next().unwrap_or("").trim(), 16)
            .unwrap_or_else(|_| panic!("chunk size {size_text:?}"));
        if size == 0 {
            break;
        }
        let start = line_end + 2;
        body.extend_from_slice(&raw[start..start + size]);
        raw = &raw[start + size + 2..];
    }
    body
}

/// `data` gzipped at the best ratio (10 MB of zeros become about 10 KB: a bomb).
pub fn gzip(data: &[u8]) -> Vec<u8> {
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    enc.write_all(data).unwrap();
    enc.finish().unwrap()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unchunked_undoes_chunked() {
        let body = b"{\"status\":\"success\",\"data\":[1,2,3]}";
        for piece in [1, 7, body.len()] {
            assert_eq!(
                unchunked(&chunked(body, piece)),
                body,
                "{piece}-byte chunks"
            );
        }
        assert_eq!(unchunked(b"3;ext=1\r\nabc\r\n0\r\n\r\n"), b"abc");
    }
}
