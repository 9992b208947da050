//! Enrollment groups in both registry backends (`file://` and `s3://` on a real moto server):
//! create-only groups, revoke by compare-and-swap, create-only member slots that racing writers
//! win exactly once, and the instance claim shared with registrations.

mod common;

use chrono::Utc;
use schemas::group::{EnrollmentGroup, GROUP_VERSION, MEMBER_VERSION, Member, Revocation};
use schemas::registry::{FileRegistry, Registry, RegistryError};
use std::sync::Arc;
use testkit::moto;

fn group(name: &str) -> EnrollmentGroup {
    let now = Utc::now();
    EnrollmentGroup {
        version: GROUP_VERSION,
        name: name.into(),
        account_id: "123456789012".into(),
        region: "us-east-1".into(),
        image_ids: vec![moto::AMI.into()],
        launch_template_id: Some("lt-0123456789abcdef0".into()),
        asg_name: Some("web-asg".into()),
        extensions: [("pp_role".to_owned(), "web".to_owned())].into(),
        max_members: 5,
        created_at: now,
        expires_at: now + chrono::Duration::days(1),
        created_by: "suite@test".into(),
        revoked: None,
    }
}

fn member(group: &str, slot: u32, n: u32) -> Member {
    let iid = format!("i-{n:017x}");
    Member {
        version: MEMBER_VERSION,
        group: group.into(),
        slot,
        certname: schemas::group::member_certname(group, &iid),
        instance_id: iid,
        image_id: moto::AMI.into(),
        pending_time: Utc::now(),
        csr_sha256: "ab".repeat(32),
        enrolled_at: Utc::now(),
        by: "suite@test".into(),
    }
}

async fn group_suite(reg: Arc<dyn Registry>) {
    let loc = reg.location();
    assert!(reg.list_groups().await.unwrap().is_empty(), "{loc}");
    assert!(reg.get_group("web").await.unwrap().is_none(), "{loc}");

    // create-only
    let g = group("web");
    let v1 = reg.create_group(&g).await.unwrap();
    let (got, v) = reg.get_group("web").await.unwrap().unwrap();
    assert_eq!((&got, &v), (&g, &v1), "{loc}");
    let mut hostile = group("web");
    hostile.image_ids = vec!["ami-0fedcba9876543210".into()];
    hostile.max_members = 10_000;
    assert!(
        matches!(
            reg.create_group(&hostile).await,
            Err(RegistryError::GroupExists(_))
        ),
        "{loc}: a group is never overwritten"
    );
    assert_eq!(reg.get_group("web").await.unwrap().unwrap().0, g, "{loc}");
    // invalid groups and names never become keys
    let mut bad = group("db");
    bad.max_members = 0;
    assert!(reg.create_group(&bad).await.is_err(), "{loc}");
    assert!(reg.get_group("../registrations").await.is_err(), "{loc}");
    reg.create_group(&group("db")).await.unwrap();
    assert_eq!(reg.list_groups().await.unwrap(), ["db", "web"], "{loc}");

    // slots: create-only, listed, read back
    let first = member("web", 0, 1);
    assert!(reg.take_slot(&first).await.unwrap(), "{loc}");
    assert!(
        !reg.take_slot(&member("web", 0, 2)).await.unwrap(),
        "{loc}: a taken slot is never overwritten"
    );
    assert_eq!(reg.get_member("web", 0).await.unwrap().unwrap(), first);
    assert!(reg.get_member("web", 1).await.unwrap().is_none());
    // a member that does not follow the scheme is refused before it is written
    let mut wrong = member("web", 1, 3);
    wrong.certname = "db-i-00000000000000003".into();
    assert!(reg.take_slot(&wrong).await.is_err(), "{loc}");

    // racing writers for the slots of one group: each slot is won exactly once
    let mut tasks = tokio::task::JoinSet::new();
    for n in 10..22u32 {
        let reg = Arc::clone(&reg);
        tasks.spawn(async move {
            for slot in 0..5 {
                if reg.take_slot(&member("db", slot, n)).await.unwrap() {
                    return Some(slot);
                }
            }
            None
        });
    }
    let mut won = Vec::new();
    while let Some(r) = tasks.join_next().await {
        if let Some(slot) = r.unwrap() {
            won.push(slot);
        }
    }
    won.sort_unstable();
    assert_eq!(won, [0, 1, 2, 3, 4], "{loc}: each slot won once");
    assert_eq!(
        reg.list_slots("db").await.unwrap(),
        [0, 1, 2, 3, 4],
        "{loc}"
    );
    assert_eq!(reg.list_slots("web").await.unwrap(), [0], "{loc}");

    // revoke: compare-and-swap on the group record
    let mut revoked = g.clone();
    revoked.revoked = Some(Revocation {
        at: Utc::now(),
        by: "suite".into(),
    });
    let v2 = reg.update_group(&revoked, &v1).await.unwrap();
    assert_ne!(v2, v1, "{loc}");
    assert!(
        matches!(
            reg.update_group(&g, &v1).await,
            Err(RegistryError::GroupConflict(_))
        ),
        "{loc}: a stale un-revoke is refused"
    );
    assert!(
        reg.get_group("web")
            .await
            .unwrap()
            .unwrap()
            .0
            .revoked
            .is_some()
    );

    // the instance claim: member holders and registration certnames share one namespace
    let holder = schemas::group::claim_holder(
        "web-i-0000000000000000a",
        "0123456789abcdef0123456789abcdef",
    );
    assert_eq!(
        reg.claim_instance("i-0000000000000000a", &holder)
            .await
            .unwrap(),
        holder
    );
    let other = schemas::group::claim_holder(
        "web-i-0000000000000000a",
        "fedcba9876543210fedcba9876543210",
    );
    assert_eq!(
        reg.claim_instance("i-0000000000000000a", &other)
            .await
            .unwrap(),
        holder,
        "{loc}: the second attempt sees the first holder"
    );
    assert_eq!(
        reg.claim_instance(
            "i-0000000000000000a",
            "0b7d3c59-5b4f-4f8e-9f0e-2d7f1f1f4a11"
        )
        .await
        .unwrap(),
        holder,
        "{loc}: a registration cannot take a group member's instance"
    );
    assert!(
        reg.claim_instance("i-0000000000000000b", "web-i-0000000000000000b")
            .await
            .is_err(),
        "{loc}: a bare member certname is no holder"
    );
    // registrations are untouched by all this
    assert!(reg.list().await.unwrap().is_empty(), "{loc}");
}

#[tokio::test]
async fn file_backend_keeps_group_semantics() {
    let dir = tempfile::tempdir().unwrap();
    group_suite(Arc::new(
        FileRegistry::new(dir.path().to_path_buf()).unwrap(),
    ))
    .await;
}

#[tokio::test]
async fn s3_backend_keeps_group_semantics() {
    let moto = moto::shared();
    let bucket = moto::unique_bucket("groups");
    moto.create_bucket(&bucket).unwrap();
    group_suite(Arc::new(
        common::s3_registry(moto, &bucket, "fleet/prod").await,
    ))
    .await;
}

#[tokio::test]
async fn s3_backend_without_prefix_keeps_group_semantics() {
    let moto = moto::shared();
    let bucket = moto::unique_bucket("groups-noprefix");
    moto.create_bucket(&bucket).unwrap();
    group_suite(Arc::new(common::s3_registry(moto, &bucket, "").await)).await;
}
