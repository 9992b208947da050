//! One trait test-suite, run against both registry backends: `file://` and `s3://` on a real
//! moto server.

mod common;

use chrono::Utc;
use schemas::registration::{Registration, sha256_hex};
use schemas::registry::{FileRegistry, Registry, RegistryError};
use std::sync::Arc;
use testkit::moto::{self, Moto};

fn record(certname: &str) -> Registration {
    Registration::new(
        certname,
        &sha256_hex(certname.as_bytes()),
        "suite@test",
        Utc::now(),
        chrono::Duration::minutes(30),
    )
}

fn name() -> String {
    uuid::Uuid::new_v4().to_string()
}

/// The semantics every backend keeps (see `schemas::registry`).
async fn suite(reg: Arc<dyn Registry>) {
    let loc = reg.location();
    assert!(
        reg.list().await.unwrap().is_empty(),
        "{loc}: a new registry is empty"
    );

    // create-only
    let a = name();
    let v1 = reg.create(&record(&a)).await.unwrap();
    let (got, v) = reg
        .get(&a)
        .await
        .unwrap()
        .expect("created record is readable");
    assert_eq!(got, record_with_times(&a, &got));
    assert_eq!(v, v1, "{loc}: get returns the version create returned");
    let mut other = record(&a);
    other.secret_sha256 = sha256_hex(b"attacker");
    match reg.create(&other).await {
        Err(RegistryError::AlreadyExists(n)) => assert_eq!(n, a),
        r => panic!("{loc}: second create of {a} must be refused, got {r:?}"),
    }
    assert_eq!(
        reg.get(&a).await.unwrap().unwrap().0.secret_sha256,
        got.secret_sha256,
        "{loc}: not overwritten"
    );

    // compare-and-swap
    let mut updated = got.clone();
    updated.instance_id = Some("i-0123456789abcdef0".into());
    let v2 = reg.update(&updated, &v1).await.unwrap();
    assert_ne!(v2, v1);
    assert_eq!(
        reg.get(&a).await.unwrap().unwrap(),
        (updated.clone(), v2.clone())
    );
    let mut stale = updated.clone();
    stale.instance_id = Some("i-stale".into());
    assert!(
        matches!(
            reg.update(&stale, &v1).await,
            Err(RegistryError::Conflict(_))
        ),
        "{loc}: stale version refused"
    );
    assert_eq!(
        reg.get(&a).await.unwrap().unwrap().0.instance_id.as_deref(),
        Some("i-0123456789abcdef0")
    );

    // concurrent updates from one version: exactly one wins
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..8 {
        let (reg, mut r, v) = (Arc::clone(&reg), updated.clone(), v2.clone());
        tasks.spawn(async move {
            r.launched_by = format!("writer-{i}");
            reg.update(&r, &v).await
        });
    }
    let (mut won, mut lost) = (0, 0);
    while let Some(r) = tasks.join_next().await {
        match r.unwrap() {
            Ok(_) => won += 1,
            Err(RegistryError::Conflict(_)) => lost += 1,
            Err(e) => panic!("{loc}: unexpected {e}"),
        }
    }
    assert_eq!(
        (won, lost),
        (1, 7),
        "{loc}: exactly one concurrent update wins"
    );

    // concurrent creates of one certname: exactly one wins, the rest are refused
    let b = name();
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..8 {
        let (reg, mut r) = (Arc::clone(&reg), record(&b));
        tasks.spawn(async move {
            r.secret_sha256 = sha256_hex(format!("secret-{i}").as_bytes());
            reg.create(&r).await.map(|_| r.secret_sha256)
        });
    }
    let mut winners = Vec::new();
    let mut refused = 0;
    while let Some(r) = tasks.join_next().await {
        match r.unwrap() {
            Ok(hash) => winners.push(hash),
            Err(RegistryError::AlreadyExists(_)) => refused += 1,
            Err(e) => panic!("{loc}: unexpected {e}"),
        }
    }
    assert_eq!(
        (winners.len(), refused),
        (1, 7),
        "{loc}: exactly one concurrent create wins"
    );
    assert_eq!(
        reg.get(&b).await.unwrap().unwrap().0.secret_sha256,
        winners[0],
        "{loc}: the winner's record is stored"
    );

    // list: sorted, complete
    let mut expected = vec![a.clone(), b.clone()];
    expected.sort();
    assert_eq!(reg.list().await.unwrap(), expected);

    // delete: idempotent; a deleted record cannot be updated
    let (cur, v) = reg.get(&a).await.unwrap().unwrap();
    reg.delete(&a).await.unwrap();
    assert!(reg.get(&a).await.unwrap().is_none());
    reg.delete(&a).await.unwrap();
    assert!(
        matches!(reg.update(&cur, &v).await, Err(RegistryError::NotFound(_))),
        "{loc}: update after delete"
    );
    assert_eq!(reg.list().await.unwrap(), vec![b.clone()]);
    assert!(
        reg.get(&name()).await.unwrap().is_none(),
        "{loc}: a missing certname is Ok(None)"
    );

    // certnames are checked before they become keys
    for bad in [
        "../escape",
        "UPPER-0b7d3c59-5b4f-4f8e-9f0e-2d7f1f1f4a11",
        "0B7D3C59-5B4F-4F8E-9F0E-2D7F1F1F4A11",
        "",
    ] {
        assert!(reg.get(bad).await.is_err(), "{loc}: get({bad:?})");
        assert!(reg.delete(bad).await.is_err(), "{loc}: delete({bad:?})");
        let mut r = record(&name());
        r.certname = bad.to_owned();
        assert!(reg.create(&r).await.is_err(), "{loc}: create({bad:?})");
    }
    reg.delete(&b).await.unwrap();
    assert!(reg.list().await.unwrap().is_empty());

    // instance claims: create-only, idempotent for the holder, the first holder wins; concurrent
    // claimers agree on one holder; claims are not registrations
    let iid = format!("i-{}", &uuid::Uuid::new_v4().simple().to_string()[..17]);
    let (x, y) = (name(), name());
    assert_eq!(
        reg.claim_instance(&iid, &x).await.unwrap(),
        x,
        "{loc}: first claim"
    );
    assert_eq!(
        reg.claim_instance(&iid, &x).await.unwrap(),
        x,
        "{loc}: same holder again"
    );
    assert_eq!(
        reg.claim_instance(&iid, &y).await.unwrap(),
        x,
        "{loc}: another certname"
    );
    let race = format!("i-{}", &uuid::Uuid::new_v4().simple().to_string()[..17]);
    let claimers: Vec<String> = (0..8).map(|_| name()).collect();
    let mut tasks = tokio::task::JoinSet::new();
    for c in claimers.clone() {
        let (reg, race) = (Arc::clone(&reg), race.clone());
        tasks.spawn(async move { reg.claim_instance(&race, &c).await.unwrap() });
    }
    let mut holders = std::collections::BTreeSet::new();
    while let Some(h) = tasks.join_next().await {
        holders.insert(h.unwrap());
    }
    assert_eq!(
        holders.len(),
        1,
        "{loc}: racing claimers disagree: {holders:?}"
    );
    assert!(claimers.contains(holders.first().unwrap()));
    assert!(
        reg.list().await.unwrap().is_empty(),
        "{loc}: claims are not registrations"
    );
    for bad in [
        "i-../../x",
        "i-0123",
        "I-0123456789ABCDEF0",
        "",
        "registrations/x",
    ] {
        assert!(
            reg.claim_instance(bad, &x).await.is_err(),
            "{loc}: claim({bad:?})"
        );
    }
    assert!(
        reg.claim_instance(&iid, "../x").await.is_err(),
        "{loc}: bad certname"
    );

    retirements(reg.as_ref()).await;
}

/// Retirements (`conductor reap`, the sweep): create-only, never twice, updated only by
/// compare-and-swap, listed sorted, names checked before they become keys.
async fn retirements(reg: &dyn Registry) {
    use schemas::retirement::{Cleaning, Retirement};
    let loc = reg.location();
    assert!(reg.list_retired().await.unwrap().is_empty(), "{loc}");
    let (a, member) = (name(), "web-i-0123456789abcdef0".to_owned());
    let r = Retirement::new(
        &a,
        "i-0123456789abcdef1",
        None,
        "EC2 reports i-0123456789abcdef1 terminated",
        "suite@test",
        Utc::now(),
    );
    assert!(reg.retire(&r).await.unwrap(), "{loc}: first retirement");
    let mut other = r.clone();
    other.reason = "overwritten".into();
    assert!(
        !reg.retire(&other).await.unwrap(),
        "{loc}: retired once only"
    );
    let (got, v1) = reg.get_retirement(&a).await.unwrap().unwrap();
    assert_eq!(got, r, "{loc}: the first record stays");
    let m = Retirement::new(
        &member,
        "i-0123456789abcdef0",
        Some("web"),
        "EC2 reports i-0123456789abcdef0 terminated",
        "suite@test",
        Utc::now(),
    );
    assert!(reg.retire(&m).await.unwrap(), "{loc}: a group member");
    let mut expected = vec![a.clone(), member.clone()];
    expected.sort();
    assert_eq!(reg.list_retired().await.unwrap(), expected, "{loc}");
    assert!(
        reg.list().await.unwrap().is_empty(),
        "{loc}: not registrations"
    );

    let mut cleaned = got.clone();
    cleaned.cleaned = Some(Cleaning {
        at: Utc::now(),
        by: "sweep@ca".into(),
        revoked_serial: Some("1f".into()),
    });
    let v2 = reg.update_retirement(&cleaned, &v1).await.unwrap();
    assert_ne!(v1, v2, "{loc}");
    assert!(
        matches!(
            reg.update_retirement(&cleaned, &v1).await,
            Err(RegistryError::Conflict(_))
        ),
        "{loc}: a stale version is refused"
    );
    assert_eq!(
        reg.get_retirement(&a).await.unwrap().unwrap(),
        (cleaned, v2)
    );
    assert!(
        reg.get_retirement(&name()).await.unwrap().is_none(),
        "{loc}"
    );

    for bad in ["../escape", "web", "Web-i-0123456789abcdef0", ""] {
        assert!(
            reg.get_retirement(bad).await.is_err(),
            "{loc}: get({bad:?})"
        );
        let mut r = r.clone();
        r.certname = bad.to_owned();
        assert!(reg.retire(&r).await.is_err(), "{loc}: retire({bad:?})");
    }
    let mut mismatched = m.clone();
    mismatched.instance_id = "i-0123456789abcdef2".into();
    mismatched.certname = "db-i-0123456789abcdef0".into();
    assert!(
        reg.retire(&mismatched).await.is_err(),
        "{loc}: a member's certname must name its instance"
    );
}

/// `record(name)` has fresh timestamps; compare everything else.
fn record_with_times(certname: &str, got: &Registration) -> Registration {
    let mut r = record(certname);
    r.created_at = got.created_at;
    r.expires_at = got.expires_at;
    r
}

#[tokio::test]
async fn file_backend_passes_the_suite() {
    let dir = tempfile::tempdir().unwrap();
    suite(Arc::new(
        FileRegistry::new(dir.path().to_path_buf()).unwrap(),
    ))
    .await;
}

#[tokio::test]
async fn file_backend_via_open_passes_the_suite() {
    let dir = tempfile::tempdir().unwrap();
    let reg = schemas::registry::open(
        &format!("file://{}", dir.path().display()),
        &Default::default(),
    )
    .await
    .unwrap();
    suite(Arc::from(reg)).await;
}

#[tokio::test]
async fn s3_backend_passes_the_suite() {
    let moto = moto::shared();
    let bucket = moto::unique_bucket("suite");
    moto.create_bucket(&bucket).unwrap();
    suite(Arc::new(
        common::s3_registry(moto, &bucket, "fleet/prod").await,
    ))
    .await;
}

#[tokio::test]
async fn s3_backend_without_prefix_passes_the_suite() {
    let moto = moto::shared();
    let bucket = moto::unique_bucket("suite-noprefix");
    moto.create_bucket(&bucket).unwrap();
    suite(Arc::new(common::s3_registry(moto, &bucket, "").await)).await;
}

#[tokio::test]
async fn s3_list_follows_pagination() {
    // A private server whose pages hold 5 keys, so 12 registrations take 3 pages.
    let moto =
        Moto::start_with(&[("MOTO_S3_DEFAULT_MAX_KEYS", "5")]).unwrap_or_else(|e| panic!("{e:#}"));
    moto.create_bucket("paged").unwrap();
    let reg = common::s3_registry(&moto, "paged", "p").await;
    let mut names: Vec<String> = (0..12).map(|_| name()).collect();
    for n in &names {
        reg.create(&record(n)).await.unwrap();
    }
    names.sort();
    assert_eq!(reg.list().await.unwrap(), names);
}

#[tokio::test]
async fn s3_missing_bucket_is_named() {
    let moto = moto::shared();
    let reg = common::s3_registry(moto, "no-such-bucket-here", "").await;
    for err in [
        reg.create(&record(&name())).await.unwrap_err(),
        reg.list().await.unwrap_err(),
        reg.get(&name()).await.unwrap_err(),
    ] {
        assert!(
            matches!(err, RegistryError::NoSuchBucket { ref bucket, .. } if bucket == "no-such-bucket-here"),
            "{err}"
        );
        assert!(err.to_string().contains("does not exist"), "{err}");
    }
}

#[tokio::test]
async fn s3_unreachable_endpoint_is_named() {
    // A port nothing listens on: bind one, then close it.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let sdk = aws_config::defaults(aws_config::BehaviorVersion::latest())
        .http_client(schemas::registry::aws::http_client())
        .region(aws_config::Region::new("us-east-1"))
        .endpoint_url(format!("http://127.0.0.1:{port}"))
        .credentials_provider(aws_sdk_s3::config::Credentials::new(
            "t", "t", None, None, "t",
        ))
        .retry_config(aws_config::retry::RetryConfig::disabled())
        .load()
        .await;
    let client = aws_sdk_s3::Client::from_conf(
        aws_sdk_s3::config::Builder::from(&sdk)
            .force_path_style(true)
            .build(),
    );
    let reg =
        schemas::registry::S3Registry::with_client(client, "b-unreachable".into(), String::new());
    let err = reg.list().await.unwrap_err();
    assert!(matches!(err, RegistryError::Unreachable { .. }), "{err}");
}

#[tokio::test]
async fn s3_public_bucket_is_reported() {
    let moto = moto::shared();
    let bucket = moto::unique_bucket("public");
    moto.create_bucket(&bucket).unwrap();
    let reg = common::s3_registry(moto, &bucket, "").await;
    let private = reg.exposure_warnings().await;
    assert!(
        private.iter().all(|w| !w.contains("grants access")),
        "{private:?}"
    );
    assert!(
        private
            .iter()
            .any(|w| w.contains("put-public-access-block")),
        "{private:?}"
    );
    let sdk = common::sdk(moto).await;
    let s3 = aws_sdk_s3::Client::from_conf(
        aws_sdk_s3::config::Builder::from(&sdk)
            .force_path_style(true)
            .build(),
    );
    s3.put_bucket_acl()
        .bucket(&bucket)
        .acl(aws_sdk_s3::types::BucketCannedAcl::PublicRead)
        .send()
        .await
        .unwrap();
    let public = reg.exposure_warnings().await;
    assert!(
        public
            .iter()
            .any(|w| w.contains("grants access") && w.contains("--acl private")),
        "{public:?}"
    );
    // With a complete public access block, nothing can make it public: no warnings.
    let pab = aws_sdk_s3::types::PublicAccessBlockConfiguration::builder()
        .block_public_acls(true)
        .ignore_public_acls(true)
        .block_public_policy(true)
        .restrict_public_buckets(true)
        .build();
    s3.put_public_access_block()
        .bucket(&bucket)
        .public_access_block_configuration(pab)
        .send()
        .await
        .unwrap();
    assert!(reg.exposure_warnings().await.is_empty());
}

#[tokio::test]
async fn corrupt_records_are_reported_not_trusted() {
    let dir = tempfile::tempdir().unwrap();
    let reg = FileRegistry::new(dir.path().to_path_buf()).unwrap();
    let n = name();
    reg.create(&record(&n)).await.unwrap();
    // A record stored under another certname's key (tampering) is refused.
    let other = name();
    std::fs::copy(
        dir.path().join(format!("registrations/{n}.json")),
        dir.path().join(format!("registrations/{other}.json")),
    )
    .unwrap();
    assert!(matches!(
        reg.get(&other).await,
        Err(RegistryError::Corrupt { .. })
    ));
}
