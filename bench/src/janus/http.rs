//! A minimal HTTP/1.1 client for Janus's REST API: one request per connection
//! (`Connection: close`), JSON bodies, bounded by a timeout. Enough for the handful of control
//! requests a benchmark makes; never on a media path.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use serde_json::Value;

use crate::report::BenchError;

/// Largest response accepted.
const MAX_RESPONSE: u64 = 1 << 20;

/// `POST path` with a JSON body (or `GET` when `body` is `None`); returns the JSON response.
pub fn request(
    addr: SocketAddr,
    path: &str,
    body: Option<&Value>,
    timeout: Duration,
) -> Result<Value, BenchError> {
    let mut s = TcpStream::connect_timeout(&addr, timeout)?;
    s.set_read_timeout(Some(timeout))?;
    s.set_write_timeout(Some(timeout))?;
    let payload = body.map(Value::to_string).unwrap_or_default();
    let head = format!(
        "{} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        if body.is_some() { "POST" } else { "GET" },
        payload.len()
    );
    s.write_all(head.as_bytes())?;
    s.write_all(payload.as_bytes())?;
    let mut raw = Vec::new();
    s.take(MAX_RESPONSE).read_to_end(&mut raw)?;
    parse_response(&raw)
}

/// Status line, headers, then a JSON body (plain or chunked).
pub fn parse_response(raw: &[u8]) -> Result<Value, BenchError> {
    let text = std::str::from_utf8(raw).map_err(|_| BenchError::Other("non-UTF-8 HTTP".into()))?;
    let (head, body) = text
        .split_once("\r\n\r\n")
        .ok_or_else(|| BenchError::Other("truncated HTTP response".into()))?;
    let status: u16 = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| BenchError::Other("bad HTTP status line".into()))?;
    if !(200..300).contains(&status) {
        return Err(BenchError::Other(format!("HTTP {status}: {body}")));
    }
    let chunked = head
        .lines()
        .any(|l| l.to_ascii_lowercase().starts_with("transfer-encoding:") && l.contains("chunked"));
    let body = if chunked {
        dechunk(body)?
    } else {
        body.to_string()
    };
    serde_json::from_str(&body).map_err(|e| BenchError::Other(format!("HTTP body: {e}")))
}

fn dechunk(mut s: &str) -> Result<String, BenchError> {
    let mut out = String::new();
    // Each chunk consumes input, so the input length bounds the loop.
    for _ in 0..=s.len() {
        let (size, rest) = s
            .split_once("\r\n")
            .ok_or_else(|| BenchError::Other("bad chunk".into()))?;
        let n = usize::from_str_radix(size.trim(), 16)
            .map_err(|_| BenchError::Other("bad chunk size".into()))?;
        if n == 0 {
            return Ok(out);
        }
        let chunk = rest
            .get(..n)
            .ok_or_else(|| BenchError::Other("short chunk".into()))?;
        out.push_str(chunk);
        s = rest.get(n + 2..).unwrap_or("");
    }
    Err(BenchError::Other("unterminated chunked body".into()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_plain_and_chunked_bodies() {
        let plain = b"HTTP/1.1 200 OK\r\nContent-Length: 11\r\n\r\n{\"janus\":1}";
        assert_eq!(parse_response(plain).expect("ok")["janus"], 1);
        let chunked =
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\n{\"a\":\r\n3\r\n 2}\r\n0\r\n\r\n";
        assert_eq!(parse_response(chunked).expect("ok")["a"], 2);
        assert!(parse_response(b"HTTP/1.1 404 Not Found\r\n\r\nnope").is_err());
        assert!(parse_response(b"garbage").is_err());
    }
}
