//! A fake EC2 instance-metadata service (IMDSv2) on 127.0.0.1.
//!
//! There is no real IMDS outside EC2, so this follows the real protocol as AWS documents it
//! (docs.aws.amazon.com/AWSEC2/latest/UserGuide/configuring-instance-metadata-service.html):
//! - `PUT /latest/api/token` with `X-aws-ec2-metadata-token-ttl-seconds: 1..=21600` returns a
//!   token (400 without or with a bad TTL; 403 when the PUT carries `X-Forwarded-For`, which is
//!   how IMDS refuses tokens requested through a proxy).
//! - Every GET needs `X-aws-ec2-metadata-token` with a live token, else **401** (IMDSv2
//!   "required" mode; no IMDSv1 fallback).
//! - `/<version>/user-data` (404 when there is none), `/<version>/meta-data/instance-id`,
//!   `/<version>/meta-data/local-hostname`, `/<version>/dynamic/instance-identity/document`
//!   (JSON; with [`FakeImds::set_identity`], the given signed document, and its PKCS#7
//!   `/dynamic/instance-identity/rsa2048` body, 404 otherwise), for `<version>` = `latest` or a dated API version such as `2021-03-23`.
//!
//! Knobs for tests: answer the next N requests with 503 ([`FakeImds::fail_next`]), delay every
//! answer ([`FakeImds::set_delay`]), expire all tokens ([`FakeImds::expire_tokens`]) or cap
//! their lifetime ([`FakeImds::set_token_ttl`]), refuse everything with 403
//! ([`FakeImds::set_forbidden`]). Every request is logged ([`FakeImds::log`]).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// One request as the fake saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Seen {
    pub method: String,
    pub path: String,
    /// The token header's value, if any.
    pub token: Option<String>,
    /// The TTL header's value, if any.
    pub ttl: Option<String>,
    /// The status the fake answered with.
    pub status: u16,
}

#[derive(Debug)]
struct State {
    user_data: Option<Vec<u8>>,
    instance_id: String,
    local_hostname: String,
    region: String,
    /// A signed identity: (document, rsa2048 body). `None`: a generated document, rsa2048 404.
    identity: Option<(String, String)>,
    fail_next: u32,
    retry_after: Option<u64>,
    delay: Duration,
    forbidden: bool,
    token_ttl_cap: Option<Duration>,
    tokens: HashMap<String, Instant>,
    counter: u64,
    log: Vec<Seen>,
}

/// The fake server; stops when dropped.
pub struct FakeImds {
    /// Base URL, e.g. `http://127.0.0.1:41234` (what `--imds-url` takes).
    pub url: String,
    state: Arc<Mutex<State>>,
    server: Arc<tiny_http::Server>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl FakeImds {
    /// Start on an ephemeral port of 127.0.0.1 with the given user-data (`None`: 404).
    pub fn start(user_data: Option<&[u8]>) -> FakeImds {
        let server = Arc::new(
            tiny_http::Server::http("127.0.0.1:0").expect("bind 127.0.0.1 for the fake IMDS"),
        );
        let port = server.server_addr().to_ip().expect("ip listener").port();
        let state = Arc::new(Mutex::new(State {
            user_data: user_data.map(<[u8]>::to_vec),
            instance_id: "i-0123456789abcdef0".into(),
            local_hostname: "ip-10-0-0-12.eu-west-1.compute.internal".into(),
            region: "eu-west-1".into(),
            identity: None,
            fail_next: 0,
            retry_after: None,
            delay: Duration::ZERO,
            forbidden: false,
            token_ttl_cap: None,
            tokens: HashMap::new(),
            counter: 0,
            log: Vec::new(),
        }));
        let (srv, st) = (server.clone(), state.clone());
        let thread = std::thread::spawn(move || {
            for req in srv.incoming_requests() {
                let st = st.clone();
                std::thread::spawn(move || handle(req, &st));
            }
        });
        FakeImds {
            url: format!("http://127.0.0.1:{port}"),
            state,
            server,
            thread: Some(thread),
        }
    }

    fn with<R>(&self, f: impl FnOnce(&mut State) -> R) -> R {
        f(&mut self.state.lock().expect("fake imds state"))
    }

    pub fn set_user_data(&self, ud: Option<&[u8]>) {
        self.with(|s| s.user_data = ud.map(<[u8]>::to_vec));
    }
    pub fn set_instance_id(&self, iid: &str) {
        self.with(|s| s.instance_id = iid.to_owned());
    }
    pub fn set_local_hostname(&self, h: &str) {
        self.with(|s| s.local_hostname = h.to_owned());
    }
    /// The region of the identity document (default `eu-west-1`).
    pub fn set_region(&self, r: &str) {
        self.with(|s| s.region = r.to_owned());
    }
    /// Serve this identity document and its `rsa2048` signature body (see [`crate::iid`]).
    pub fn set_identity(&self, document: &str, rsa2048: &str) {
        self.with(|s| s.identity = Some((document.to_owned(), rsa2048.to_owned())));
    }
    /// Back to a generated, unsigned document and a 404 for `rsa2048`.
    pub fn clear_identity(&self) {
        self.with(|s| s.identity = None);
    }
    /// Answer the next `n` requests (token PUTs included) with 503, optionally with `Retry-After`.
    pub fn fail_next(&self, n: u32, retry_after: Option<u64>) {
        self.with(|s| {
            s.fail_next = n;
            s.retry_after = retry_after;
        });
    }
    /// Delay every answer by `d`.
    pub fn set_delay(&self, d: Duration) {
        self.with(|s| s.delay = d);
    }
    /// Answer everything with 403 (IMDS disabled / refused).
    pub fn set_forbidden(&self, on: bool) {
        self.with(|s| s.forbidden = on);
    }
    /// Make every token issued so far invalid (as if its TTL ran out).
    pub fn expire_tokens(&self) {
        self.with(|s| s.tokens.clear());
    }
    /// Tokens issued from now on live at most `d`, whatever TTL was asked for.
    pub fn set_token_ttl(&self, d: Option<Duration>) {
        self.with(|s| s.token_ttl_cap = d);
    }
    /// Every request so far.
    pub fn log(&self) -> Vec<Seen> {
        self.with(|s| s.log.clone())
    }
}

impl Drop for FakeImds {
    fn drop(&mut self) {
        self.server.unblock();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn header(req: &tiny_http::Request, name: &str) -> Option<String> {
    req.headers()
        .iter()
        .find(|h| h.field.as_str().as_str().eq_ignore_ascii_case(name))
        .map(|h| h.value.as_str().to_owned())
}

/// Strip `/latest/` or `/YYYY-MM-DD/`; `None` for other prefixes.
fn strip_version(path: &str) -> Option<&str> {
    let rest = path.strip_prefix('/')?;
    let (v, tail) = rest.split_once('/')?;
    let dated = v.len() == 10
        && v.chars().enumerate().all(|(i, c)| {
            if i == 4 || i == 7 {
                c == '-'
            } else {
                c.is_ascii_digit()
            }
        });
    (v == "latest" || dated).then_some(tail)
}

fn handle(req: tiny_http::Request, st: &Mutex<State>) {
    let method = req.method().as_str().to_owned();
    let path = req.url().split('?').next().unwrap_or("").to_owned();
    let token = header(&req, "X-aws-ec2-metadata-token");
    let ttl = header(&req, "X-aws-ec2-metadata-token-ttl-seconds");
    let forwarded = header(&req, "X-Forwarded-For").is_some();
    let delay = st.lock().expect("state").delay;
    if !delay.is_zero() {
        std::thread::sleep(delay);
    }
    let (status, body, retry_after): (u16, Vec<u8>, Option<u64>) = {
        let mut s = st.lock().expect("state");
        let now = Instant::now();
        let answer = if s.fail_next > 0 {
            s.fail_next -= 1;
            (503, b"Service Unavailable".to_vec(), s.retry_after)
        } else if s.forbidden || (forwarded && method == "PUT") {
            (403, b"Forbidden".to_vec(), None)
        } else if method == "PUT" && path == "/latest/api/token" {
            match ttl
                .as_deref()
                .and_then(|t| t.parse::<u64>().ok())
                .filter(|t| (1..=21600).contains(t))
            {
                None => (
                    400,
                    b"Missing or invalid X-aws-ec2-metadata-token-ttl-seconds".to_vec(),
                    None,
                ),
                Some(secs) => {
                    s.counter += 1;
                    let tok = format!(
                        "AQAEA-fake-token-{}-{}",
                        s.counter,
                        now.elapsed().as_nanos()
                    );
                    let mut life = Duration::from_secs(secs);
                    if let Some(cap) = s.token_ttl_cap {
                        life = life.min(cap);
                    }
                    s.tokens.insert(tok.clone(), now + life);
                    (200, tok.into_bytes(), None)
                }
            }
        } else if method != "GET" {
            (405, Vec::new(), None)
        } else if token
            .as_ref()
            .is_none_or(|t| s.tokens.get(t).is_none_or(|exp| *exp <= now))
        {
            (401, b"Unauthorized".to_vec(), None)
        } else {
            match strip_version(&path) {
                Some("user-data") => match &s.user_data {
                    Some(ud) => (200, ud.clone(), None),
                    None => (404, b"Not Found".to_vec(), None),
                },
                Some("meta-data/instance-id") => (200, s.instance_id.clone().into_bytes(), None),
                Some("meta-data/local-hostname") => {
                    (200, s.local_hostname.clone().into_bytes(), None)
                }
                Some("dynamic/instance-identity/document") if s.identity.is_some() => {
                    let (doc, _) = s.identity.as_ref().expect("checked");
                    (200, doc.clone().into_bytes(), None)
                }
                Some("dynamic/instance-identity/rsa2048") => match &s.identity {
                    Some((_, sig)) => (200, sig.clone().into_bytes(), None),
                    None => (404, b"Not Found".to_vec(), None),
                },
                Some("dynamic/instance-identity/document") => {
                    let doc = serde_json::json!({
                        "accountId": "123456789012",
                        "architecture": "x86_64",
                        "availabilityZone": format!("{}a", s.region),
                        "imageId": "ami-0123456789abcdef0",
                        "instanceId": s.instance_id,
                        "instanceType": "t3.micro",
                        "privateIp": "10.0.0.12",
                        "region": s.region,
                        "version": "2017-09-30",
                    });
                    (200, serde_json::to_vec_pretty(&doc).expect("json"), None)
                }
                _ => (404, b"Not Found".to_vec(), None),
            }
        };
        s.log.push(Seen {
            method,
            path,
            token,
            ttl,
            status: answer.0,
        });
        answer
    };
    let mut resp = tiny_http::Response::from_data(body).with_status_code(status);
    if let Some(ra) = retry_after {
        resp.add_header(
            tiny_http::Header::from_bytes("Retry-After", ra.to_string()).expect("header"),
        );
    }
    let _ = req.respond(resp);
}
