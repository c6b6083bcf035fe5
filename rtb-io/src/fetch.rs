//! Owns blocking, bounded fetches of one small document for a control thread (never a worker:
//! they block): a local file, or one HTTP/1.0 GET of an `http://` URL (HTTP/1.0, so the answer
//! is never chunked; `Connection: close`), bounded in bytes and in time, only a 200 accepted.
//! The exchange's currency rates come this way.

use std::{
    io::{Read, Write},
    net::TcpStream,
    path::Path,
    time::{Duration, Instant},
};

use crate::resolve::{resolve_all, RESOLVE_TIMEOUT};

/// Room for an HTTP answer's head on top of the document itself.
const HEAD_BYTES_MAX: usize = 16 * 1024;

/// Reads at most `bytes_max + 1` bytes of `path`, so the caller can tell a file over its limit.
pub fn read_file(path: &Path, bytes_max: usize) -> Result<Vec<u8>, String> {
    let file = std::fs::File::open(path).map_err(|e| format!("cannot open: {e}"))?;
    let mut bytes = Vec::new();
    let cap = u64::try_from(bytes_max)
        .unwrap_or(u64::MAX)
        .saturating_add(1);
    file.take(cap)
        .read_to_end(&mut bytes)
        .map_err(|e| format!("cannot read: {e}"))?;
    Ok(bytes)
}

/// Where an HTTP GET goes: `host` and `port` to connect to (a name is resolved by the system
/// resolver), the `Host` header's `authority` and the `path` (with its query).
#[derive(Debug, Clone, Copy)]
pub struct HttpTarget<'a> {
    /// Host name or IP literal (no brackets).
    pub host: &'a str,
    /// TCP port.
    pub port: u16,
    /// `host[:port]` as the `Host` header spells it.
    pub authority: &'a str,
    /// Path and query.
    pub path: &'a str,
}

/// One HTTP/1.0 GET, bounded by `timeout` (connect, send, read; name resolution has its own
/// bound) and by `bytes_max` of body; returns the body of a 200.
pub fn http_get(
    target: HttpTarget<'_>,
    bytes_max: usize,
    timeout: Duration,
) -> Result<Vec<u8>, String> {
    let addr = *resolve_all(target.host, target.port, RESOLVE_TIMEOUT)?
        .first()
        .ok_or("host name has no address")?;
    let started = Instant::now();
    let mut stream = TcpStream::connect_timeout(&addr, timeout)
        .map_err(|e| format!("cannot connect to {addr}: {e}"))?;
    let request = format!(
        "GET {} HTTP/1.0\r\nHost: {}\r\nAccept: application/json\r\nUser-Agent: rtb-exchange\r\n\r\n",
        target.path, target.authority
    );
    stream
        .set_write_timeout(Some(timeout))
        .and_then(|()| stream.write_all(request.as_bytes()))
        .map_err(|e| format!("cannot send the request: {e}"))?;
    let mut answer = Vec::new();
    let mut chunk = [0u8; 8192];
    loop {
        let left = timeout
            .checked_sub(started.elapsed())
            .filter(|d| !d.is_zero())
            .ok_or("timed out")?;
        stream
            .set_read_timeout(Some(left))
            .map_err(|e| e.to_string())?;
        match stream.read(&mut chunk) {
            Ok(0) => break,
            Ok(n) => answer.extend_from_slice(&chunk[..n]),
            Err(e) => return Err(format!("cannot read the answer: {e}")),
        }
        if answer.len() > bytes_max + HEAD_BYTES_MAX {
            return Err("answer too large".into());
        }
    }
    body_of_ok(&answer)
}

/// The body of a complete HTTP/1.x answer whose status is 200.
fn body_of_ok(answer: &[u8]) -> Result<Vec<u8>, String> {
    let head_end = answer
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or("no HTTP answer head")?;
    let status_line = answer[..head_end]
        .split(|&b| b == b'\n')
        .next()
        .unwrap_or(b"");
    let status = std::str::from_utf8(status_line)
        .ok()
        .and_then(|line| line.split_whitespace().nth(1))
        .unwrap_or("");
    if status != "200" {
        // At most 16 characters of what the server sent are echoed.
        return Err(format!("HTTP status {status:.16?}, not 200"));
    }
    Ok(answer[head_end + 4..].to_vec())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::TcpListener;

    /// Serves `answers` to successive connections, one each, on a loopback port.
    fn serve(answers: Vec<String>) -> std::net::SocketAddr {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        std::thread::spawn(move || {
            for answer in answers {
                let (mut conn, _) = listener.accept().unwrap();
                let mut head = [0u8; 1024];
                let _ = conn.read(&mut head);
                let _ = conn.write_all(answer.as_bytes());
            }
        });
        addr
    }

    #[test]
    fn a_200_gives_its_body_and_anything_else_an_error() {
        let ok = "HTTP/1.0 200 OK\r\nContent-Type: application/json\r\n\r\n{\"a\":1}".to_string();
        let missing = "HTTP/1.0 404 Not Found\r\n\r\nnope".to_string();
        let big = format!("HTTP/1.0 200 OK\r\n\r\n{}", "x".repeat(64 * 1024));
        let addr = serve(vec![ok, missing, big]);
        let authority = addr.to_string();
        let target = HttpTarget {
            host: "127.0.0.1",
            port: addr.port(),
            authority: &authority,
            path: "/latest.json",
        };
        let timeout = Duration::from_secs(5);
        assert_eq!(http_get(target, 1024, timeout).unwrap(), b"{\"a\":1}");
        let error = http_get(target, 1024, timeout).unwrap_err();
        assert!(error.contains("404"), "{error}");
        let error = http_get(target, 1024, timeout).unwrap_err();
        assert!(error.contains("too large"), "{error}");
    }

    #[test]
    fn a_file_is_read_up_to_one_byte_past_its_limit() {
        let path = std::env::temp_dir().join(format!("rtb-fetch-{}", std::process::id()));
        std::fs::write(&path, "0123456789").unwrap();
        assert_eq!(read_file(&path, 100).unwrap(), b"0123456789");
        assert_eq!(read_file(&path, 4).unwrap(), b"01234");
        let _ = std::fs::remove_file(&path);
        assert!(read_file(&path, 4).unwrap_err().starts_with("cannot open"));
    }
}
