//! Key fetching by id against a keyserver on 127.0.0.1 that speaks the HKP lookup protocol
//! (`GET /pks/lookup?op=get&options=mr&search=0x<ID>` → the armored key, 404 if unknown): the
//! fingerprint must match the requested id, only the requested certificate is kept, and the
//! request goes through the apt proxy. The attacks (a compromised keyserver or anyone on the path
//! adding keys to the answer) are served by [`answering`].

use bootcfg::action::KeyFetch;
use bootcfg::keys::fetch;
use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::sync::{Arc, Mutex};

const KEY: &str = include_str!("fixtures/repo-key.asc");
const FPR: &str = include_str!("fixtures/repo-key.fpr");
/// Another certificate (ed25519 primary key, cv25519 subkey), made with gpg for these tests.
const ATTACKER: &str = include_str!("fixtures/attacker-key.asc");
/// Its primary key's fingerprint, then its subkey's.
const ATTACKER_FPR: &str = include_str!("fixtures/attacker-key.fpr");

/// A tiny keyserver (and, for absolute-URI requests, a forward proxy to itself) that answers
/// every lookup with what `answer` returns for the request line (404 for `None`).
/// Returns its URL and the request lines it saw.
fn answering(
    answer: impl Fn(&str) -> Option<String> + Send + 'static,
) -> (String, Arc<Mutex<Vec<String>>>) {
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
            let lookup = first.contains("/pks/lookup?op=get&options=mr&search=0x");
            let (status, body) = match answer(&first).filter(|_| lookup) {
                Some(body) => ("200 OK", body),
                None => ("404 Not Found", "No results found".to_owned()),
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

/// The honest keyserver: the repo key for its fingerprint, its long or short id, and (to test
/// the fingerprint check) for `0x0000…`.
fn keyserver() -> (String, Arc<Mutex<Vec<String>>>) {
    answering(|first| {
        let known = first.contains(&format!("search=0x{}", FPR.trim()))
            || first.contains(&format!("search=0x{}", &FPR.trim()[32..]))
            || first.contains("0x0000");
        known.then(|| KEY.to_owned())
    })
}

fn bin(armored: &str) -> Vec<u8> {
    schemas::pgp::dearmor(armored).unwrap()
}

fn fetch_id(url: String, id: &str) -> Result<Vec<u8>, String> {
    fetch(
        &KeyFetch::Keyid {
            id: id.to_owned(),
            keyserver: url,
        },
        None,
    )
}

fn attacker_fprs() -> Vec<String> {
    ATTACKER_FPR.lines().map(str::to_owned).collect()
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

/// A compromised keyserver (or anyone on the path) appends its own key to the real answer, in
/// the same armored block: only the requested certificate is written, byte for byte.
#[test]
fn a_key_appended_to_the_answer_is_dropped() {
    let both = schemas::pgp::armor(&[bin(KEY), bin(ATTACKER)].concat());
    let (url, _) = answering(move |_| Some(both.clone()));
    for id in [FPR.trim(), &FPR.trim()[24..], &FPR.trim()[32..]] {
        let got = fetch_id(url.clone(), id).unwrap();
        assert_eq!(
            got,
            bin(KEY),
            "id {id}: the keyring must hold the requested certificate only"
        );
        let certs = schemas::pgp::certificates(&got).unwrap();
        assert_eq!(certs.len(), 1);
        assert_eq!(certs[0].fingerprint, FPR.trim());
    }
}

/// The same with the extra key first, in a block of its own.
#[test]
fn a_key_put_before_the_answer_in_another_block_is_dropped() {
    let body = format!("{ATTACKER}\n{KEY}");
    let (url, _) = answering(move |_| Some(body.clone()));
    assert_eq!(fetch_id(url, FPR.trim()).unwrap(), bin(KEY));
}

/// Asked for the attacker's own key by fingerprint, the answer's other certificate (here: the
/// repo key) is dropped just the same.
#[test]
fn only_the_asked_for_certificate_is_kept_whichever_it_is() {
    let both = schemas::pgp::armor(&[bin(KEY), bin(ATTACKER)].concat());
    let (url, _) = answering(move |_| Some(both.clone()));
    assert_eq!(fetch_id(url, &attacker_fprs()[0]).unwrap(), bin(ATTACKER));
}

/// The requested fingerprint is a *subkey's*: no certificate's primary key matches, so the
/// answer is refused (cloud-init and the old code imported the whole certificate).
#[test]
fn an_answer_where_only_a_subkey_matches_is_refused() {
    let (url, _) = answering(|_| Some(ATTACKER.to_owned()));
    let sub = attacker_fprs()[1].clone();
    let err = fetch_id(url.clone(), &sub).unwrap_err();
    assert!(
        err.contains("only a subkey")
            && err.contains(&attacker_fprs()[0])
            && err.contains("refusing"),
        "{err}"
    );
    // and the subkey's short id too
    let err = fetch_id(url, &sub[32..]).unwrap_err();
    assert!(err.contains("only a subkey"), "{err}");
}

/// A subkey match next to a certificate whose primary key does not match is refused as well, even
/// when the repo key itself is in the answer.
#[test]
fn a_subkey_match_among_other_keys_is_refused() {
    let both = schemas::pgp::armor(&[bin(KEY), bin(ATTACKER)].concat());
    let (url, _) = answering(move |_| Some(both.clone()));
    let err = fetch_id(url, &attacker_fprs()[1]).unwrap_err();
    assert!(err.contains("only a subkey"), "{err}");
}

/// Two certificates match the requested fingerprint: the real one, and a forgery that copies its
/// public primary key packet and adds the attacker's user id, signatures and subkey. Refused
/// (which one would apt trust?), as is the same certificate twice.
#[test]
fn an_answer_with_several_matching_certificates_is_refused() {
    let real = bin(KEY);
    let attacker = bin(ATTACKER);
    // both exported by gpg with a legacy one-byte-length primary key packet header
    assert_eq!((real[0], attacker[0]), (0x98, 0x98));
    let primary = &real[..2 + real[1] as usize];
    let forged = [primary, &attacker[2 + attacker[1] as usize..]].concat();
    let answers = [
        schemas::pgp::armor(&[real.clone(), forged.clone()].concat()),
        format!("{}\n{}", schemas::pgp::armor(&forged), KEY),
        schemas::pgp::armor(&[real.clone(), real.clone()].concat()),
    ];
    for body in answers {
        let b = body.clone();
        let (url, _) = answering(move |_| Some(b.clone()));
        let err = fetch_id(url, FPR.trim()).unwrap_err();
        assert!(
            err.contains("2 certificates matching") && err.contains("refusing"),
            "{err}\n{body}"
        );
    }
}
