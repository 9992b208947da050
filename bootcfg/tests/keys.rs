//! Key fetching by id against a keyserver on 127.0.0.1 that speaks the HKP lookup protocol
//! (`GET /pks/lookup?op=get&options=mr&search=0x<ID>` → the armored key, 404 if unknown): the
//! fingerprint must match the requested id, and the request goes through the apt proxy.

use bootcfg::keys::fetch;
use bootcfg::plan::KeyFetch;
use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::sync::{Arc, Mutex};

const KEY: &str = include_str!("fixtures/repo-key.asc");
const FPR: &str = include_str!("fixtures/repo-key.fpr");

/// A tiny keyserver (and, for absolute-URI requests, a forward proxy to itself).
/// Returns its URL and the request lines it saw.
fn keyserver() -> (String, Arc<Mutex<Vec<String>>>) {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", l.local_addr().unwrap());
    let seen = Arc::new(Mutex::new(Vec::new()));
    let s2 = seen.clone();
    std::thread::spawn(move || {
        for conn in l.incoming() {
            let Ok(mut conn) = conn else { continue };
            let mut r = BufReader::new(conn.try_clone().unwrap());
            let mut first = String::new();
            r.read_line(&mut first).unwrap();
            loop {
                let mut h = String::new();
                if r.read_line(&mut h).unwrap() == 0 || h == "\r\n" {
                    break;
                }
            }
            s2.lock().unwrap().push(first.trim().to_owned());
            let want = format!("search=0x{}", FPR.trim());
            let known = first.contains("/pks/lookup?op=get&options=mr&search=0x")
                && (first.contains(&want)
                    || first.contains(&format!("search=0x{}", &FPR.trim()[32..]))
                    || first.contains("0x0000"));
            let (status, body) = if known {
                ("200 OK", KEY)
            } else {
                ("404 Not Found", "No results found")
            };
            let _ = write!(
                conn,
                "HTTP/1.1 {status}\r\nContent-Type: application/pgp-keys\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
        }
    });
    (url, seen)
}

#[test]
fn full_fingerprint_fetched_and_checked() {
    let (url, seen) = keyserver();
    let id = FPR.trim().to_owned();
    let bin = fetch(
        &KeyFetch::Keyid {
            id: id.clone(),
            keyserver: url,
        },
        None,
    )
    .unwrap();
    assert_eq!(
        bin,
        schemas::pgp::dearmor(KEY).unwrap(),
        "binary keyring = dearmored key"
    );
    let seen = seen.lock().unwrap();
    assert_eq!(seen.len(), 1);
    assert!(
        seen[0].starts_with(&format!("GET /pks/lookup?op=get&options=mr&search=0x{id} ")),
        "{seen:?}"
    );
}

#[test]
fn a_key_whose_fingerprint_does_not_match_is_refused() {
    // the server answers the wrong key for this id (a compromised or confused keyserver)
    let (url, _) = keyserver();
    let id = "0000000000000000000000000000000000000000".to_owned();
    let err = fetch(&KeyFetch::Keyid { id, keyserver: url }, None).unwrap_err();
    assert!(
        err.contains("refusing") && err.contains(FPR.trim()),
        "{err}"
    );
}

#[test]
fn short_id_still_needs_a_matching_fingerprint() {
    let (url, _) = keyserver();
    let short = FPR.trim()[32..].to_owned();
    assert_eq!(short.len(), 8);
    assert!(
        fetch(
            &KeyFetch::Keyid {
                id: short,
                keyserver: url
            },
            None
        )
        .is_ok()
    );
}

#[test]
fn unknown_key_is_a_clear_error() {
    let (url, _) = keyserver();
    let err = fetch(
        &KeyFetch::Keyid {
            id: "ABCDEF0123456789ABCDEF0123456789ABCDEF01".into(),
            keyserver: url,
        },
        None,
    )
    .unwrap_err();
    assert!(err.contains("404"), "{err}");
}

#[test]
fn the_apt_proxy_is_used() {
    // keyserver.invalid does not resolve: the only way to get the key is through the proxy
    let (proxy, seen) = keyserver();
    let id = FPR.trim().to_owned();
    fetch(
        &KeyFetch::Keyid {
            id: id.clone(),
            keyserver: "http://keyserver.invalid".into(),
        },
        Some(&proxy),
    )
    .unwrap();
    let seen = seen.lock().unwrap();
    assert!(
        seen[0].starts_with(&format!(
            "GET http://keyserver.invalid/pks/lookup?op=get&options=mr&search=0x{id} "
        )),
        "absolute-URI request to the proxy: {seen:?}"
    );
}
