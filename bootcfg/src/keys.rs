//! Fetching repository signing keys by id, and checking that we got the key we asked for.
//!
//! Differences from cloud-init (documented, deliberate):
//! - Keys come over HTTPS (`https://<keyserver>/pks/lookup?op=get&options=mr&search=0x<ID>`,
//!   the HKPS protocol), not plaintext HKP on port 11371. `hkps://host` and a bare `host` mean
//!   HTTPS; `hkp://host[:port]` and `http://…` are accepted with a warning (the fingerprint check
//!   below still applies). The request goes through the configured apt proxy.
//! - **The fetched key's fingerprint must match the requested id** (the id must be the tail of
//!   the primary key's or a subkey's fingerprint). cloud-init imports whatever comes back.
//! - Short ids (8 hex) are accepted with a loud warning: they collide trivially.
//! - No `gpg` is needed: the keyserver's armored answer is dearmored by [`schemas::pgp`].

use crate::plan::KeyFetch;
use std::time::Duration;

/// The HTTPS lookup URL for `id` on `keyserver`.
pub fn lookup_url(keyserver: &str, id: &str) -> Result<String, String> {
    let ks = keyserver.trim().trim_end_matches('/');
    let base = if let Some(rest) = ks.strip_prefix("hkps://") {
        format!("https://{rest}")
    } else if let Some(rest) = ks.strip_prefix("hkp://") {
        tracing::warn!(
            keyserver = ks,
            "hkp:// is plaintext; the key's fingerprint is still checked"
        );
        format!("http://{rest}")
    } else if ks.starts_with("https://") {
        ks.to_owned()
    } else if ks.starts_with("http://") {
        tracing::warn!(
            keyserver = ks,
            "http:// keyserver is plaintext; the key's fingerprint is still checked"
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

/// Check that `binary` holds a key whose fingerprint ends with `id`.
pub fn check_fingerprint(binary: &[u8], id: &str) -> Result<String, String> {
    let want = id.replace(' ', "").to_ascii_uppercase();
    let fps = schemas::pgp::fingerprints(binary).map_err(|e| {
        format!("the key server's answer for {want} is not a usable public key: {e}")
    })?;
    match fps.iter().find(|fp| fp.ends_with(&want)) {
        Some(fp) => Ok(fp.clone()),
        None => Err(format!(
            "the key server returned a key with fingerprint(s) {} for the requested id {want}; refusing it",
            fps.join(", ")
        )),
    }
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

/// Fetch the key and return it as a binary keyring, fingerprint-checked.
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
    let fp = check_fingerprint(&binary, &id)?;
    tracing::info!(fingerprint = %fp, "fetched key matches the requested id");
    Ok(binary)
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
        assert!(lookup_url("ldap://k", "AB").is_err());
    }
}
