//! A small HTTP/1.1 reverse proxy on 127.0.0.1 in front of an AWS endpoint (moto), which
//! misbehaves on purpose for EC2 `DescribeInstances` requests (those whose body contains
//! `Action=DescribeInstances`; [`FaultProxy::start`]) or for any requests a test picks
//! ([`FaultProxy::start_for`]): it answers 503 `RequestLimitExceeded`, delays, fails with 500 or
//! refuses with 403, as a script decides per request. Every other request (S3, STS, other EC2
//! actions) is passed through unchanged.
//!
//! Point a program at it with `AWS_ENDPOINT_URL=<FaultProxy::endpoint>`. Each connection carries
//! one request: the proxy answers with `Connection: close`. Plain `std` threads, no async runtime.
//!
//! ```no_run
//! use testkit::faultproxy::{Fault, FaultProxy};
//! let proxy = FaultProxy::start("http://127.0.0.1:5000", |n| {
//!     if n <= 2 { Fault::Throttle } else { Fault::Pass }
//! })
//! .unwrap();
//! // ... run the program with AWS_ENDPOINT_URL=proxy.endpoint() ...
//! assert_eq!(proxy.matched(), 3);
//! ```

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::time::Duration;

/// What the proxy does with one `DescribeInstances` request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// Forward it and relay the answer.
    Pass,
    /// Answer HTTP 503 with EC2's XML error `RequestLimitExceeded` (what EC2 throttling looks like).
    Throttle,
    /// Wait this long, then forward it (a client that gave up meanwhile gets nothing).
    Delay(Duration),
    /// Answer HTTP 500 with EC2's XML error `InternalError`.
    Fail500,
    /// Answer HTTP 403 with an S3-style XML error `AccessDenied` (not retried by the SDKs).
    Forbidden,
}

/// Decides the fault for the n-th matched request (counted from 1, retries included).
type Script = dyn Fn(u32) -> Fault + Send + Sync;
/// Whether a request is one the script decides about: (request line, body without chunk framing).
type Matcher = dyn Fn(&str, &[u8]) -> bool + Send + Sync;

/// A running proxy; it stops accepting when dropped.
pub struct FaultProxy {
    endpoint: String,
    matched: Arc<AtomicU32>,
    stop: Arc<AtomicBool>,
    port: u16,
}

/// Whether a request body is an EC2 `DescribeInstances` call (query protocol, form-encoded).
fn is_describe_instances(body: &[u8]) -> bool {
    let needle = b"Action=DescribeInstances";
    body.windows(needle.len())
        .enumerate()
        .any(|(i, w)| w == needle && body.get(i + needle.len()).is_none_or(|&b| b == b'&'))
}

impl FaultProxy {
    /// Start a proxy for `upstream` (`http://127.0.0.1:PORT`) on a free port of 127.0.0.1,
    /// scripting EC2 `DescribeInstances` requests.
    pub fn start(
        upstream: &str,
        script: impl Fn(u32) -> Fault + Send + Sync + 'static,
    ) -> anyhow::Result<FaultProxy> {
        Self::start_for(upstream, |_, body| is_describe_instances(body), script)
    }

    /// [`FaultProxy::start`] scripting the requests `matches` picks, given the request line
    /// (`PUT /bucket/key HTTP/1.1`) and the body.
    pub fn start_for(
        upstream: &str,
        matches: impl Fn(&str, &[u8]) -> bool + Send + Sync + 'static,
        script: impl Fn(u32) -> Fault + Send + Sync + 'static,
    ) -> anyhow::Result<FaultProxy> {
        let upstream = upstream
            .strip_prefix("http://")
            .ok_or_else(|| anyhow::anyhow!("upstream `{upstream}` is not http://HOST:PORT"))?
            .trim_end_matches('/')
            .to_owned();
        let listener = TcpListener::bind("127.0.0.1:0")?;
        let port = listener.local_addr()?.port();
        let matched = Arc::new(AtomicU32::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let script: Arc<Script> = Arc::new(script);
        let matches: Arc<Matcher> = Arc::new(matches);
        {
            let (matched, stop) = (Arc::clone(&matched), Arc::clone(&stop));
            std::thread::spawn(move || {
                for conn in listener.incoming() {
                    if stop.load(Ordering::SeqCst) {
                        break;
                    }
                    let Ok(conn) = conn else { continue };
                    let (matched, script, matches, upstream) = (
                        Arc::clone(&matched),
                        Arc::clone(&script),
                        Arc::clone(&matches),
                        upstream.clone(),
                    );
                    std::thread::spawn(move || {
                        let rules = (matches.as_ref(), script.as_ref());
                        if let Err(e) = serve(conn, &upstream, &matched, rules) {
                            tracing::debug!("faultproxy: {e:#}");
                        }
                    });
                }
            });
        }
        Ok(FaultProxy {
            endpoint: format!("http://127.0.0.1:{port}"),
            matched,
            stop,
            port,
        })
    }

    /// `http://127.0.0.1:PORT`, for `AWS_ENDPOINT_URL`.
    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    /// How many scripted requests (`DescribeInstances` for [`FaultProxy::start`]) arrived so
    /// far, retries included.
    pub fn matched(&self) -> u32 {
        self.matched.load(Ordering::SeqCst)
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wake the accept loop so it sees the flag.
        let _ = TcpStream::connect(("127.0.0.1", self.port));
    }
}

/// One request read off the wire: the head (request line and headers, without the final blank
/// line) and the raw body (as sent: chunked bodies keep their framing).
struct Request {
    request_line: String,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
    /// The body without chunked framing, for matching.
    payload: Vec<u8>,
}

fn read_request(reader: &mut BufReader<TcpStream>) -> anyhow::Result<Option<Request>> {
    let mut request_line = String::new();
    if reader.read_line(&mut request_line)? == 0 {
        return Ok(None);
    }
    let request_line = request_line.trim_end().to_owned();
    let mut headers = Vec::new();
    loop {
        let mut line = String::new();
        anyhow::ensure!(
            reader.read_line(&mut line)? > 0,
            "connection closed in the headers"
        );
        let line = line.trim_end();
        if line.is_empty() {
            break;
        }
        let (k, v) = line
            .split_once(':')
            .ok_or_else(|| anyhow::anyhow!("malformed header `{line}`"))?;
        headers.push((k.trim().to_owned(), v.trim().to_owned()));
    }
    let header = |name: &str| {
        headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.clone())
    };
    let chunked =
        header("transfer-encoding").is_some_and(|v| v.to_ascii_lowercase().contains("chunked"));
    let (body, payload) = if chunked {
        let (mut raw, mut payload) = (Vec::new(), Vec::new());
        loop {
            let mut size_line = String::new();
            anyhow::ensure!(
                reader.read_line(&mut size_line)? > 0,
                "connection closed in a chunk"
            );
            raw.extend_from_slice(size_line.as_bytes());
            let size =
                usize::from_str_radix(size_line.trim().split(';').next().unwrap_or("").trim(), 16)?;
            if size == 0 {
                // Trailers, up to the blank line.
                loop {
                    let mut line = String::new();
                    anyhow::ensure!(
                        reader.read_line(&mut line)? > 0,
                        "connection closed in trailers"
                    );
                    raw.extend_from_slice(line.as_bytes());
                    if line.trim_end().is_empty() {
                        break;
                    }
                }
                break;
            }
            let mut chunk = vec![0; size + 2];
            reader.read_exact(&mut chunk)?;
            payload.extend_from_slice(&chunk[..size]);
            raw.extend_from_slice(&chunk);
        }
        (raw, payload)
    } else {
        let len: usize = header("content-length")
            .map(|v| v.parse())
            .transpose()?
            .unwrap_or(0);
        let mut body = vec![0; len];
        reader.read_exact(&mut body)?;
        (body.clone(), body)
    };
    Ok(Some(Request {
        request_line,
        headers,
        body,
        payload,
    }))
}

fn serve(
    conn: TcpStream,
    upstream: &str,
    matched: &AtomicU32,
    (matches, script): (&Matcher, &Script),
) -> anyhow::Result<()> {
    conn.set_read_timeout(Some(Duration::from_secs(60)))?;
    let mut reader = BufReader::new(conn.try_clone()?);
    let mut client = conn;
    let Some(req) = read_request(&mut reader)? else {
        return Ok(());
    };
    let fault = if matches(&req.request_line, &req.payload) {
        let n = matched.fetch_add(1, Ordering::SeqCst) + 1;
        script(n)
    } else {
        Fault::Pass
    };
    match fault {
        Fault::Throttle => ec2_error(
            &mut client,
            "503 Service Unavailable",
            "RequestLimitExceeded",
            "Request limit exceeded.",
        )?,
        Fault::Fail500 => ec2_error(
            &mut client,
            "500 Internal Server Error",
            "InternalError",
            "An internal error has occurred (faultproxy).",
        )?,
        Fault::Forbidden => {
            let body = "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>AccessDenied</Code><Message>Access Denied (faultproxy)</Message><RequestId>0</RequestId></Error>";
            write!(
                client,
                "HTTP/1.1 403 Forbidden\r\nContent-Type: application/xml\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            )?;
            client.flush()?;
        }
        Fault::Delay(d) => {
            std::thread::sleep(d);
            forward(&mut client, upstream, &req)?;
        }
        Fault::Pass => forward(&mut client, upstream, &req)?,
    }
    let _ = client.shutdown(Shutdown::Both);
    Ok(())
}

/// Send `req` to `upstream` on a fresh connection and relay the answer, with `Connection: close`.
fn forward(client: &mut TcpStream, upstream: &str, req: &Request) -> anyhow::Result<()> {
    let mut up = TcpStream::connect(upstream)?;
    up.set_read_timeout(Some(Duration::from_secs(120)))?;
    let mut head = format!("{}\r\n", req.request_line);
    for (k, v) in &req.headers {
        if !k.eq_ignore_ascii_case("connection") && !k.eq_ignore_ascii_case("keep-alive") {
            head.push_str(&format!("{k}: {v}\r\n"));
        }
    }
    head.push_str("Connection: close\r\n\r\n");
    up.write_all(head.as_bytes())?;
    up.write_all(&req.body)?;
    let mut response = Vec::new();
    up.read_to_end(&mut response)?;
    let split = response
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or_else(|| anyhow::anyhow!("upstream sent no complete response head"))?;
    let head = String::from_utf8_lossy(&response[..split]);
    let mut out = String::new();
    for line in head.split("\r\n") {
        let name = line.split(':').next().unwrap_or("").trim();
        if !name.eq_ignore_ascii_case("connection") && !name.eq_ignore_ascii_case("keep-alive") {
            out.push_str(line);
            out.push_str("\r\n");
        }
    }
    out.push_str("Connection: close\r\n\r\n");
    client.write_all(out.as_bytes())?;
    client.write_all(&response[split + 4..])?;
    client.flush()?;
    Ok(())
}

/// An EC2 (query protocol) XML error answer.
fn ec2_error(
    client: &mut TcpStream,
    status: &str,
    code: &str,
    message: &str,
) -> anyhow::Result<()> {
    let body = format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Response><Errors><Error><Code>{code}</Code><Message>{message}</Message></Error></Errors><RequestID>00000000-0000-0000-0000-000000000000</RequestID></Response>"
    );
    write!(
        client,
        "HTTP/1.1 {status}\r\nContent-Type: text/xml;charset=UTF-8\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )?;
    client.flush()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recognises_describe_instances_only() {
        assert!(is_describe_instances(
            b"Action=DescribeInstances&Version=2016-11-15&Filter.1.Name=instance-id"
        ));
        assert!(is_describe_instances(b"Action=DescribeInstances"));
        assert!(!is_describe_instances(
            b"Action=DescribeInstanceStatus&Version=2016-11-15"
        ));
        assert!(!is_describe_instances(
            b"Action=DescribeInstancesX&Version=2016-11-15"
        ));
        assert!(!is_describe_instances(b"Action=RunInstances"));
    }

    /// A throwaway upstream that answers every request with `200 ok`, counting them.
    fn upstream() -> (String, Arc<AtomicU32>) {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = format!("http://{}", listener.local_addr().unwrap());
        let hits = Arc::new(AtomicU32::new(0));
        let counter = Arc::clone(&hits);
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                let Ok(conn) = conn else { continue };
                let mut reader = BufReader::new(conn.try_clone().unwrap());
                let mut conn = conn;
                if let Ok(Some(_)) = read_request(&mut reader) {
                    counter.fetch_add(1, Ordering::SeqCst);
                    let _ = conn.write_all(
                        b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: keep-alive\r\n\r\nok",
                    );
                }
            }
        });
        (addr, hits)
    }

    fn post(endpoint: &str, body: &str) -> String {
        let mut s = TcpStream::connect(endpoint.trim_start_matches("http://")).unwrap();
        write!(
            s,
            "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        )
        .unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).unwrap();
        out
    }

    #[test]
    fn scripts_describe_instances_and_passes_the_rest() {
        let (up, hits) = upstream();
        let proxy = FaultProxy::start(&up, |n| match n {
            1 => Fault::Throttle,
            2 => Fault::Fail500,
            _ => Fault::Pass,
        })
        .unwrap();
        let r = post(
            proxy.endpoint(),
            "Action=DescribeInstances&Version=2016-11-15",
        );
        assert!(r.starts_with("HTTP/1.1 503"), "{r}");
        assert!(r.contains("<Code>RequestLimitExceeded</Code>"), "{r}");
        let r = post(
            proxy.endpoint(),
            "Action=DescribeInstances&Version=2016-11-15",
        );
        assert!(r.starts_with("HTTP/1.1 500"), "{r}");
        assert_eq!(
            hits.load(Ordering::SeqCst),
            0,
            "faults never reach upstream"
        );
        let r = post(
            proxy.endpoint(),
            "Action=DescribeInstances&Version=2016-11-15",
        );
        assert!(r.starts_with("HTTP/1.1 200"), "{r}");
        assert!(
            r.contains("Connection: close\r\n") && !r.contains("keep-alive"),
            "{r}"
        );
        assert!(r.ends_with("\r\n\r\nok"), "{r}");
        let r = post(proxy.endpoint(), "Action=RunInstances");
        assert!(r.starts_with("HTTP/1.1 200"), "{r}");
        assert_eq!(hits.load(Ordering::SeqCst), 2);
        assert_eq!(proxy.matched(), 3);
    }

    #[test]
    fn passes_chunked_bodies_through() {
        let (up, hits) = upstream();
        let proxy = FaultProxy::start(&up, |_| Fault::Fail500).unwrap();
        let mut s = TcpStream::connect(proxy.endpoint().trim_start_matches("http://")).unwrap();
        s.write_all(
            b"PUT /b/k HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\nx-amz-checksum-crc32: AAAAAA==\r\n\r\n",
        )
        .unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).unwrap();
        assert!(out.starts_with("HTTP/1.1 200"), "{out}");
        assert_eq!(hits.load(Ordering::SeqCst), 1);
        assert_eq!(proxy.matched(), 0);
    }

    #[test]
    fn scripts_what_a_matcher_picks() {
        let (up, hits) = upstream();
        let proxy = FaultProxy::start_for(
            &up,
            |line, _| line.starts_with("PUT ") && line.contains("/retired/"),
            |_| Fault::Forbidden,
        )
        .unwrap();
        let mut s = TcpStream::connect(proxy.endpoint().trim_start_matches("http://")).unwrap();
        s.write_all(
            b"PUT /b/fleet/retired/x.json HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\n{}",
        )
        .unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).unwrap();
        assert!(out.starts_with("HTTP/1.1 403"), "{out}");
        assert!(out.contains("<Code>AccessDenied</Code>"), "{out}");
        let r = post(proxy.endpoint(), "Action=DescribeInstances");
        assert!(r.starts_with("HTTP/1.1 200"), "{r}");
        assert_eq!((proxy.matched(), hits.load(Ordering::SeqCst)), (1, 1));
    }
}
