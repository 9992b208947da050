//! Fetching repository signing keys by id, and keeping only the key we asked for.
//!
//! Differences from cloud-init (documented, deliberate):
//! - Keys come over HTTPS (`https://<keyserver>/pks/lookup?op=get&options=mr&search=0x<ID>`,
//!   the HKPS protocol), not plaintext HKP on port 11371. `hkps://host` and a bare `host` mean
//!   HTTPS. A plaintext keyserver (`hkp://host[:port]`, `http://…`) is refused when the user-data
//!   is validated unless its source says `allow_plaintext_keyserver: true`; then it is used with
//!   a warning. The request goes through the configured apt proxy.
//! - **Only the requested certificate is kept.** The answer is split into certificates (a
//!   primary key with its user ids, signatures and subkeys, up to the next primary key); exactly
//!   one certificate's *primary* key must match the requested id (the tail of a v4 fingerprint,
//!   the head of a v6 one, or the whole fingerprint), and only that certificate is written. A key
//!   appended by a compromised keyserver or by anyone on the path is dropped, never trusted for
//!   the repository. An answer where only a subkey matches, or where several certificates match
//!   (a short-id collision, a duplicated primary key with other packets), is refused.
//!   cloud-init imports whatever comes back.
//! - Short ids (8 hex) are accepted with a loud warning: they collide trivially.
//! - No `gpg` is needed: the keyserver's armored answer is dearmored by [`schemas::pgp`].

use crate::action::{KeyFetch, KeySource};
use std::time::Duration;

/// Whether a keyserver (host or URL) is reached in plaintext: `hkp://` or `http://`.
pub fn is_plaintext(keyserver: &str) -> bool {
    let ks = keyserver.trim().to_ascii_lowercase();
    ks.starts_with("hkp://") || ks.starts_with("http://")
}

/// The lookup URL for `id` on `keyserver` (`hkps://` and bare hosts: HTTPS). A plaintext one
/// only reaches this function when the user-data allowed it (`allow_plaintext_keyserver`,
/// checked when the user-data is validated); it is used with a warning.
pub fn lookup_url(keyserver: &str, id: &str) -> Result<String, String> {
    let ks = keyserver.trim().trim_end_matches('/');
    // the scheme is case-insensitive (RFC 3986 §3.1)
    let lowered;
    let ks = match ks.split_once("://") {
        Some((scheme, rest)) if scheme.chars().any(|c| c.is_ascii_uppercase()) => {
            lowered = format!("{}://{rest}", scheme.to_ascii_lowercase());
            lowered.as_str()
        }
        _ => ks,
    };
    let base = if let Some(rest) = ks.strip_prefix("hkps://") {
        format!("https://{rest}")
    } else if let Some(rest) = ks.strip_prefix("hkp://") {
        tracing::warn!(
            keyserver = ks,
            "PLAINTEXT KEYSERVER (allowed by allow_plaintext_keyserver): anyone on the path sees and can change the answer; only the certificate whose primary key matches the requested fingerprint is kept"
        );
        format!("http://{rest}")
    } else if ks.starts_with("https://") {
        ks.to_owned()
    } else if ks.starts_with("http://") {
        tracing::warn!(
            keyserver = ks,
            "PLAINTEXT KEYSERVER (allowed by allow_plaintext_keyserver): anyone on the path sees and can change the answer; only the certificate whose primary key matches the requested fingerprint is kept"
        );
        ks.to_owned()
    } else if ks.contains("://") {
        return Err(format!(
            "keyserver `{ks}`: only hkps://, https://, hkp:// and http:// are supported"
        ));
    } else {
        format!("https://{ks}")
    };
    Ok(format!("{base}/pks/lookup?op=get&options=mr&search=0x{id}"))
}

/// Whether `fingerprint` is the key that `id` names: the whole fingerprint, or its key id (the
/// last 8 or 16 hex digits of a v4 fingerprint, the first 16 of a v6 one).
fn names(fingerprint: &str, id: &str) -> bool {
    if id.is_empty() {
        return false;
    }
    fingerprint == id
        || (fingerprint.len() == 40 && id.len() < 40 && fingerprint.ends_with(id))
        || (fingerprint.len() == 64 && id.len() < 64 && fingerprint.starts_with(id))
}

/// From a keyserver's answer (binary OpenPGP data), the one certificate whose primary key `id`
/// names: its bytes (nothing else from the answer) and its fingerprint. Refused: an answer that
/// is not a public key, where no primary key matches (even if a subkey does), or where several
/// certificates match.
pub fn select_certificate(binary: &[u8], id: &str) -> Result<(Vec<u8>, String), String> {
    let want = id.replace(' ', "").to_ascii_uppercase();
    let certs = schemas::pgp::certificates(binary).map_err(|e| {
        format!("the key server's answer for {want} is not a usable public key: {e}")
    })?;
    let matching: Vec<&schemas::pgp::Certificate> = certs
        .iter()
        .filter(|c| names(&c.fingerprint, &want))
        .collect();
    match matching[..] {
        [cert] => {
            if certs.len() > 1 {
                let others: Vec<&str> = certs
                    .iter()
                    .filter(|c| c.range != cert.range)
                    .map(|c| c.fingerprint.as_str())
                    .collect();
                tracing::warn!(
                    requested = %want,
                    dropped = %others.join(", "),
                    "the key server answered with other keys too; keeping only the requested certificate"
                );
            }
            Ok((
                binary[cert.range.clone()].to_vec(),
                cert.fingerprint.clone(),
            ))
        }
        [] => {
            if let Some(c) = certs
                .iter()
                .find(|c| c.subkeys.iter().any(|s| names(s, &want)))
            {
                return Err(format!(
                    "the key server's answer for {want} matches only a subkey of certificate {}; refusing it (a repository key is named by its primary key: use keyid {} if that is the repository's key)",
                    c.fingerprint, c.fingerprint
                ));
            }
            let fps: Vec<&str> = certs.iter().map(|c| c.fingerprint.as_str()).collect();
            Err(format!(
                "the key server returned a key with fingerprint(s) {} for the requested id {want}; refusing it",
                fps.join(", ")
            ))
        }
        _ => {
            let fps: Vec<&str> = matching.iter().map(|c| c.fingerprint.as_str()).collect();
            Err(format!(
                "the key server's answer holds {} certificates matching {want} ({}); refusing it (give the full 40-hex fingerprint; a keyserver answers one certificate per fingerprint)",
                matching.len(),
                fps.join(", ")
            ))
        }
    }
}

/// Check that `binary` holds exactly one certificate whose primary key `id` names; its
/// fingerprint (see [`select_certificate`]).
pub fn check_fingerprint(binary: &[u8], id: &str) -> Result<String, String> {
    select_certificate(binary, id).map(|(_, fp)| fp)
}

/// Warn about ids that are not full fingerprints.
pub fn warn_short_id(id: &str) {
    match id.len() {
        0..=8 => tracing::warn!(
            key_id = id,
            "SHORT KEY ID: 32-bit key ids collide trivially; anyone can make a key with this id. Use the full 40-hex fingerprint."
        ),
        9..=39 => tracing::warn!(
            key_id = id,
            "key id is not a full fingerprint; prefer the full 40-hex fingerprint"
        ),
        _ => {}
    }
}

fn client(proxy: Option<&str>) -> Result<reqwest::blocking::Client, String> {
    let mut b = reqwest::blocking::Client::builder()
        .timeout(Duration::from_secs(30))
        .no_proxy();
    if let Some(p) = proxy {
        b = b.proxy(reqwest::Proxy::all(p).map_err(|e| format!("apt proxy: {e}"))?);
    }
    b.build().map_err(|e| format!("http client: {e}"))
}

/// GET with 3 tries (1 s then 3 s apart: a keyserver or the network blipping at boot).
fn get_text(client: &reqwest::blocking::Client, url: &str) -> Result<String, String> {
    let mut last = String::new();
    for delay in [0u64, 1, 3] {
        std::thread::sleep(Duration::from_secs(delay));
        match client.get(url).send() {
            Ok(r) if r.status().is_success() => return r.text().map_err(|e| format!("{url}: {e}")),
            Ok(r) if r.status() == reqwest::StatusCode::NOT_FOUND => {
                return Err(format!("{url}: 404 Not Found (no such key)"));
            }
            Ok(r) => last = format!("{url}: HTTP {}", r.status()),
            Err(e) => last = format!("{url}: {e}"),
        }
    }
    Err(last)
}

/// Fetch the key and return the requested certificate alone as a binary keyring (see
/// [`select_certificate`]).
pub fn fetch(key: &KeyFetch, proxy: Option<&str>) -> Result<Vec<u8>, String> {
    let c = client(proxy)?;
    let (id, keyserver) = match key {
        KeyFetch::Keyid { id, keyserver } => (id.clone(), keyserver.clone()),
        KeyFetch::Launchpad {
            owner,
            name,
            keyserver,
        } => {
            let url = format!("https://api.launchpad.net/1.0/~{owner}/+archive/ubuntu/{name}");
            let body = get_text(&c, &url)?;
            let v: serde_json::Value =
                serde_json::from_str(&body).map_err(|e| format!("{url}: {e}"))?;
            let fp = v["signing_key_fingerprint"]
                .as_str()
                .filter(|s| s.len() >= 40 && s.chars().all(|c| c.is_ascii_hexdigit()))
                .ok_or_else(|| format!("{url}: no signing_key_fingerprint in the answer"))?;
            (fp.to_ascii_uppercase(), keyserver.clone())
        }
    };
    warn_short_id(&id);
    let url = lookup_url(&keyserver, &id)?;
    let text = get_text(&c, &url)?;
    let binary = schemas::pgp::dearmor(&text).map_err(|e| format!("{url}: {e}"))?;
    let (cert, fp) = select_certificate(&binary, &id)?;
    tracing::info!(fingerprint = %fp, "fetched key matches the requested id; keeping only its certificate");
    Ok(cert)
}

/// The real [`KeySource`]: keyservers and Launchpad over HTTPS ([`fetch`]).
pub struct Keyservers;

impl KeySource for Keyservers {
    fn fetch(&self, key: &KeyFetch, proxy: Option<&str>) -> Result<Vec<u8>, String> {
        fetch(key, proxy)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        assert_eq!(
            lookup_url("keyserver.ubuntu.com", "ABCD").unwrap(),
            "https://keyserver.ubuntu.com/pks/lookup?op=get&options=mr&search=0xABCD"
        );
        assert_eq!(
            lookup_url("hkps://k.example/", "AB").unwrap(),
            "https://k.example/pks/lookup?op=get&options=mr&search=0xAB"
        );
        assert_eq!(
            lookup_url("hkp://k:11371", "AB").unwrap(),
            "http://k:11371/pks/lookup?op=get&options=mr&search=0xAB"
        );
        assert_eq!(
            lookup_url("HKPS://k.example", "AB").unwrap(),
            "https://k.example/pks/lookup?op=get&options=mr&search=0xAB"
        );
        assert!(lookup_url("ldap://k", "AB").is_err());
        assert!(is_plaintext("hkp://k") && is_plaintext("HTTP://k"));
        assert!(!is_plaintext("hkps://k") && !is_plaintext("k") && !is_plaintext("https://k"));
    }

    #[test]
    fn ids_name_v4_tails_and_v6_heads() {
        let v4 = "8DDB97313824B2421BDF94C754BB42169D3B75D6";
        assert!(names(v4, v4) && names(v4, "54BB42169D3B75D6") && names(v4, "9D3B75D6"));
        assert!(!names(v4, "8DDB9731") && !names(v4, ""));
        let v6 = format!("{}{}", "AB".repeat(8), "CD".repeat(24));
        assert!(names(&v6, &v6) && names(&v6, &"AB".repeat(8)));
        assert!(!names(&v6, &"CD".repeat(8)));
    }
}
