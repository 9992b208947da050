//! EC2 instance metadata (IMDSv2) client.
//!
//! - Session token first: `PUT <base>/latest/api/token` with
//!   `X-aws-ec2-metadata-token-ttl-seconds: 21600`; every GET carries `X-aws-ec2-metadata-token`.
//!   There is no IMDSv1 fallback. The token never appears in logs.
//! - Reads are pinned to API version [`API_VERSION`] (`2021-03-23`, the newest version
//!   cloud-init probes; it has everything bootcfg reads): `user-data`, `meta-data/instance-id`,
//!   `meta-data/local-hostname`, `dynamic/instance-identity/document`,
//!   `dynamic/instance-identity/rsa2048` (the AWS-signed PKCS#7 of the document, base64 in
//!   76-column lines: read as one line with all whitespace removed, for `puppet.instance_identity`;
//!   refused if over [`MAX_IDENTITY_BYTES`] or not base64).
//! - 404 on `user-data` means "no user-data" (`Ok(None)`), not an error.
//! - 401 (token expired or rejected) gets a fresh token and one more try.
//! - 403 is a clear error, never retried: IMDS refuses us (IMDS disabled on the instance, or a
//!   token PUT through a proxy / with `X-Forwarded-For`).
//! - Connection errors, timeouts and 503 are retried with exponential backoff — 0.25 s, 0.5 s,
//!   1 s, 2 s, 4 s, then 5 s each time (honouring `Retry-After` if larger) — until the total
//!   budget (`--imds-timeout`, default 120 s) is spent. Why: at first boot the network (or
//!   the ENI's route to 169.254.169.254) can take seconds to come up, and IMDS answers 503 when
//!   throttling; AWS recommends exponential backoff for both. cloud-init waits up to 240 s.
//!   Each request has its own timeout (default 5 s) so a hung connection is retried, too.
//! - No HTTP proxy is ever used for IMDS (the proxy environment variables are ignored).

use reqwest::StatusCode;
use reqwest::blocking::{Client, Response};
use std::cell::RefCell;
use std::time::{Duration, Instant};

pub const DEFAULT_URL: &str = "http://169.254.169.254";
pub const API_VERSION: &str = "2021-03-23";
pub const TOKEN_TTL_SECONDS: u32 = 21600;
pub const TOKEN_HEADER: &str = "X-aws-ec2-metadata-token";
pub const TTL_HEADER: &str = "X-aws-ec2-metadata-token-ttl-seconds";
/// The AWS-signed instance identity proof (base64 of a PKCS#7 SignedData, no PEM armour).
pub const IDENTITY_RSA2048: &str = "dynamic/instance-identity/rsa2048";
/// Largest `rsa2048` body accepted, in bytes (EC2's is about 1.5 KB).
pub const MAX_IDENTITY_BYTES: usize = 4096;

#[derive(Debug, thiserror::Error)]
pub enum ImdsError {
    #[error(
        "{url}: 403 Forbidden: the instance metadata service refuses this request \
         (IMDS disabled for this instance, or the request went through a proxy); enable it with \
         `aws ec2 modify-instance-metadata-options --http-endpoint enabled`"
    )]
    Forbidden { url: String },
    #[error(
        "{url}: no usable answer after {waited_s:.1} s (budget {budget_s} s): {last}\n  \
         fix: on EC2, check that the instance metadata service is enabled and reachable; elsewhere, \
         give the user-data with --seed-dir or --user-data, or disable the unit (touch /etc/bootcfg/disabled)"
    )]
    Exhausted {
        url: String,
        waited_s: f64,
        budget_s: u64,
        last: String,
    },
    #[error("{url}: unexpected HTTP status {status}")]
    Status { url: String, status: u16 },
    #[error("{url}: {message}")]
    Body { url: String, message: String },
}

/// What bootcfg reads from IMDS.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Metadata {
    pub user_data: Option<Vec<u8>>,
    pub instance_id: String,
    pub local_hostname: Option<String>,
    pub region: Option<String>,
    /// The body of `dynamic/instance-identity/rsa2048` on one line (all ASCII whitespace
    /// removed, checked to be base64); `None` on 404.
    pub identity_rsa2048: Option<String>,
}

/// The `rsa2048` body as one line: every ASCII whitespace character removed (IMDS breaks it
/// into 76-column lines; Puppet writes custom attributes as PrintableString, where a newline is
/// illegal). Refused, naming `url`, when the body is over [`MAX_IDENTITY_BYTES`], empty, or
/// holds anything outside the base64 alphabet `A-Za-z0-9+/=`.
pub fn identity_one_line(url: &str, body: &[u8]) -> Result<String, ImdsError> {
    let refuse = |message: String| ImdsError::Body {
        url: url.to_owned(),
        message,
    };
    if body.len() > MAX_IDENTITY_BYTES {
        return Err(refuse(format!(
            "the instance identity signature is {} bytes, more than the {MAX_IDENTITY_BYTES} \
             expected of an AWS-signed PKCS#7; refusing it",
            body.len()
        )));
    }
    let mut out = String::with_capacity(body.len());
    for (i, &b) in body.iter().enumerate() {
        if b.is_ascii_whitespace() {
            continue;
        }
        if !(b.is_ascii_alphanumeric() || matches!(b, b'+' | b'/' | b'=')) {
            let shown = if b.is_ascii_graphic() {
                format!("`{}`", char::from(b))
            } else {
                format!("0x{b:02x}")
            };
            return Err(refuse(format!(
                "the instance identity signature is not base64: byte {i} is {shown} \
                 (expected only A-Z a-z 0-9 + / = and line breaks); refusing it"
            )));
        }
        out.push(char::from(b));
    }
    if out.is_empty() {
        return Err(refuse(
            "the instance identity signature is empty; refusing it".into(),
        ));
    }
    Ok(out)
}

pub struct Imds {
    base: String,
    client: Client,
    token: RefCell<Option<String>>,
    budget: Duration,
    start: RefCell<Option<Instant>>,
}

/// Backoff delay before retry number `n` (0-based).
pub fn backoff(n: u32) -> Duration {
    let ms = 250u64.saturating_mul(1 << n.min(5));
    Duration::from_millis(ms.min(5_000))
}

impl Imds {
    /// `base` like `http://169.254.169.254` (no trailing path). `budget` bounds the total time
    /// spent retrying; `per_request` bounds each request.
    pub fn new(base: &str, budget: Duration, per_request: Duration) -> Result<Imds, ImdsError> {
        let client = Client::builder()
            .no_proxy()
            .timeout(per_request)
            .connect_timeout(per_request)
            .build()
            .map_err(|e| ImdsError::Body {
                url: base.to_owned(),
                message: e.to_string(),
            })?;
        Ok(Imds {
            base: base.trim_end_matches('/').to_owned(),
            client,
            token: RefCell::new(None),
            budget,
            start: RefCell::new(None),
        })
    }

    fn deadline(&self) -> Instant {
        let mut s = self.start.borrow_mut();
        *s.get_or_insert_with(Instant::now) + self.budget
    }

    /// Send with retries on connection errors, timeouts and 503, within the total budget.
    fn send_retrying(
        &self,
        url: &str,
        make: &dyn Fn() -> reqwest::blocking::RequestBuilder,
    ) -> Result<Response, ImdsError> {
        let deadline = self.deadline();
        let started = Instant::now();
        let mut n = 0;
        loop {
            let (last, retry_after) = match make().send() {
                Ok(r) if r.status() == StatusCode::SERVICE_UNAVAILABLE => {
                    let ra = r
                        .headers()
                        .get(reqwest::header::RETRY_AFTER)
                        .and_then(|v| v.to_str().ok())
                        .and_then(|v| v.trim().parse::<u64>().ok())
                        .map(Duration::from_secs);
                    ("503 Service Unavailable".to_owned(), ra)
                }
                Ok(r) => return Ok(r),
                Err(e) => (format!("{e}"), None),
            };
            let delay = backoff(n).max(retry_after.unwrap_or_default());
            let now = Instant::now();
            if now + delay >= deadline {
                return Err(ImdsError::Exhausted {
                    url: url.to_owned(),
                    waited_s: (now - started).as_secs_f64(),
                    budget_s: self.budget.as_secs(),
                    last,
                });
            }
            tracing::warn!(url, error = %last, retry_in_ms = delay.as_millis() as u64, "IMDS not answering yet; retrying");
            std::thread::sleep(delay);
            n += 1;
        }
    }

    fn fetch_token(&self) -> Result<String, ImdsError> {
        let url = format!("{}/latest/api/token", self.base);
        let r = self.send_retrying(&url, &|| {
            self.client
                .put(&url)
                .header(TTL_HEADER, TOKEN_TTL_SECONDS.to_string())
        })?;
        match r.status() {
            s if s.is_success() => {
                let t = r.text().map_err(|e| ImdsError::Body {
                    url: url.clone(),
                    message: e.to_string(),
                })?;
                let t = t.trim().to_owned();
                if t.is_empty() {
                    return Err(ImdsError::Body {
                        url,
                        message: "empty token".into(),
                    });
                }
                Ok(t)
            }
            StatusCode::FORBIDDEN => Err(ImdsError::Forbidden { url }),
            s => Err(ImdsError::Status {
                url,
                status: s.as_u16(),
            }),
        }
    }

    fn token(&self) -> Result<String, ImdsError> {
        if let Some(t) = self.token.borrow().as_ref() {
            return Ok(t.clone());
        }
        let t = self.fetch_token()?;
        *self.token.borrow_mut() = Some(t.clone());
        Ok(t)
    }

    /// GET `<base>/<API_VERSION>/<path>`; `Ok(None)` on 404.
    pub fn get(&self, path: &str) -> Result<Option<Vec<u8>>, ImdsError> {
        let url = format!(
            "{}/{API_VERSION}/{}",
            self.base,
            path.trim_start_matches('/')
        );
        for attempt in 0..2 {
            let token = self.token()?;
            let r = self.send_retrying(&url, &|| {
                self.client.get(&url).header(TOKEN_HEADER, token.as_str())
            })?;
            match r.status() {
                s if s.is_success() => {
                    let b = r.bytes().map_err(|e| ImdsError::Body {
                        url: url.clone(),
                        message: e.to_string(),
                    })?;
                    return Ok(Some(b.to_vec()));
                }
                StatusCode::NOT_FOUND => return Ok(None),
                StatusCode::UNAUTHORIZED if attempt == 0 => {
                    tracing::info!(url, "IMDS token rejected (expired?); fetching a new one");
                    *self.token.borrow_mut() = None;
                }
                StatusCode::FORBIDDEN => return Err(ImdsError::Forbidden { url }),
                s => {
                    return Err(ImdsError::Status {
                        url,
                        status: s.as_u16(),
                    });
                }
            }
        }
        Err(ImdsError::Status { url, status: 401 })
    }

    fn url(&self, path: &str) -> String {
        format!("{}/{API_VERSION}/{path}", self.base)
    }

    fn get_text(&self, path: &str) -> Result<Option<String>, ImdsError> {
        Ok(self
            .get(path)?
            .map(|b| String::from_utf8_lossy(&b).trim().to_owned()))
    }

    /// Everything bootcfg needs. The instance id comes from the identity document (as
    /// cloud-init does on AWS), falling back to `meta-data/instance-id`.
    pub fn metadata(&self) -> Result<Metadata, ImdsError> {
        let user_data = self.get("user-data")?;
        let doc = self.get_text("dynamic/instance-identity/document")?;
        let doc: Option<serde_json::Value> = doc.and_then(|d| serde_json::from_str(&d).ok());
        let from_doc = doc
            .as_ref()
            .and_then(|d| d["instanceId"].as_str().map(str::to_owned));
        let instance_id = match from_doc {
            Some(i) => i,
            None => self
                .get_text("meta-data/instance-id")?
                .ok_or_else(|| ImdsError::Body {
                    url: self.url("meta-data/instance-id"),
                    message: "404: IMDS has no instance id".into(),
                })?,
        };
        let region = doc
            .as_ref()
            .and_then(|d| d["region"].as_str().map(str::to_owned));
        let local_hostname = self.get_text("meta-data/local-hostname")?;
        let identity_rsa2048 = match self.get(IDENTITY_RSA2048)? {
            Some(body) => Some(identity_one_line(&self.url(IDENTITY_RSA2048), &body)?),
            None => None,
        };
        Ok(Metadata {
            user_data,
            instance_id,
            local_hostname,
            region,
            identity_rsa2048,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_then_caps() {
        let d: Vec<u64> = (0..8).map(|n| backoff(n).as_millis() as u64).collect();
        assert_eq!(d, [250, 500, 1000, 2000, 4000, 5000, 5000, 5000]);
    }

    const URL: &str = "http://169.254.169.254/2021-03-23/dynamic/instance-identity/rsa2048";

    #[test]
    fn identity_body_becomes_one_line() {
        let body = format!("{}\n{}\r\n{}==\n", "A".repeat(76), "b+/9".repeat(19), "Zz");
        let one = identity_one_line(URL, body.as_bytes()).unwrap();
        assert_eq!(one.len(), 76 + 76 + 4);
        assert!(!one.contains(|c: char| c.is_whitespace()), "{one}");
        assert!(one.ends_with("Zz=="));
    }

    #[test]
    fn identity_body_that_is_not_base64_or_too_big_is_refused_naming_the_url() {
        for (body, want) in [
            (
                "MIAG\n-----BEGIN PKCS7-----\n".to_owned(),
                "not base64: byte 5 is `-`",
            ),
            ("MIAG%0A".to_owned(), "not base64: byte 4 is `%`"),
            (" \n\n".to_owned(), "empty"),
            (
                "A".repeat(MAX_IDENTITY_BYTES + 1),
                "4097 bytes, more than the 4096",
            ),
        ] {
            let e = identity_one_line(URL, body.as_bytes())
                .unwrap_err()
                .to_string();
            assert!(e.starts_with(URL) && e.contains(want), "{e}");
        }
        let e = identity_one_line(URL, "MIAG\u{e9}".as_bytes())
            .unwrap_err()
            .to_string();
        assert!(e.contains("byte 4 is 0xc3"), "{e}");
        assert!(identity_one_line(URL, "A".repeat(MAX_IDENTITY_BYTES).as_bytes()).is_ok());
    }
}
