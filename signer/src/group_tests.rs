//! Enrollment groups: the decision and the enrollment writes, on the in-memory registry, with
//! identity documents signed by a harness-made "AWS" key (testkit::iid). Each attack asserts the
//! check *and* the reason, so a refusal for another reason (say, an unknown certname form in a
//! build without groups) does not pass.

use crate::craft::{self, Spec};
use crate::csr;
use crate::decide::{Approval, Basis, Check, Decider, Mode, Rejection};
use crate::identity::TrustedCerts;
use crate::memreg::MemRegistry;
use chrono::{DateTime, Utc};
use openssl::pkey::{PKey, Private};
use schemas::group::{EnrollmentGroup, GROUP_VERSION, Revocation};
use schemas::registration::{IdentityBinding, Registration, sha256_hex};
use schemas::registry::Registry;
use schemas::signer_config::Policy;
use std::sync::{Arc, OnceLock};
use std::time::Duration;
use testkit::iid::{Doc, MOTO_ACCOUNT, TestAws};

const AMI: &str = "ami-0123456789abcdef0";
const OTHER_AMI: &str = "ami-0fedcba9876543210";
const REGION: &str = "eu-west-1";
const GROUP: &str = "web";

struct World {
    aws: TestAws,
    trust: TrustedCerts,
    policy: Policy,
    key: PKey<Private>,
}

fn world() -> &'static World {
    static W: OnceLock<World> = OnceLock::new();
    W.get_or_init(|| {
        let aws = TestAws::generate(REGION);
        let trust = TrustedCerts::parse("test bundle", &aws.bundle_pem()).unwrap();
        let mut policy = Policy::default();
        policy.identity.accounts = vec![MOTO_ACCOUNT.into(), "210987654321".into()];
        policy.groups.enabled = true;
        World {
            aws,
            trust,
            policy,
            key: craft::rsa_key(2048),
        }
    })
}

fn now() -> DateTime<Utc> {
    Utc::now()
}

fn group(max: u32) -> EnrollmentGroup {
    let created = now() - chrono::Duration::minutes(10);
    EnrollmentGroup {
        version: GROUP_VERSION,
        name: GROUP.into(),
        account_id: MOTO_ACCOUNT.into(),
        region: REGION.into(),
        image_ids: vec![AMI.into()],
        launch_template_id: Some("lt-0123456789abcdef0".into()),
        asg_name: Some("web-asg".into()),
        extensions: [("pp_role".to_owned(), "web".to_owned())].into(),
        max_members: max,
        created_at: created,
        expires_at: created + chrono::Duration::days(1),
        created_by: "ops@ws".into(),
        revoked: None,
    }
}

fn iid(n: u32) -> String {
    format!("i-{n:017x}")
}

fn doc(n: u32) -> Doc {
    Doc::new(&iid(n), AMI, REGION)
}

/// A member's CSR as `conductor group user-data` makes bootcfg write it: certname
/// `<group>-<iid>`, the group attribute, the identity proof, pp_role and pp_instance_id.
fn member_csr(certname: &str, group_attr: &[&str], d: &Doc) -> Spec {
    let mut s = Spec::new(certname, "");
    s.challenge.clear();
    s = s
        .ext(csr::OID_PP_INSTANCE_ID, craft::utf8_ext(&d.instance_id))
        .ext("1.3.6.1.4.1.34380.1.1.13", craft::utf8_ext("web"));
    for g in group_attr {
        s.attributes.push((
            csr::OID_ENROLLMENT_GROUP.into(),
            craft::tlv(crate::der::UTF8_STRING, g.as_bytes()),
        ));
    }
    let blob: String = world().aws.sign(&d.render()).split_whitespace().collect();
    s.attributes.push((
        csr::OID_INSTANCE_IDENTITY.into(),
        craft::tlv(crate::der::PRINTABLE_STRING, blob.as_bytes()),
    ));
    s
}

fn good(n: u32) -> (String, Vec<u8>) {
    let d = doc(n);
    let name = format!("{GROUP}-{}", d.instance_id);
    let pem = member_csr(&name, &[GROUP], &d).build(&world().key);
    (name, pem)
}

fn decider<'a>(mem: &'a MemRegistry, policy: &'a Policy) -> Decider<'a> {
    Decider {
        trust: &world().trust,
        registry: mem,
        policy,
        registry_deadline: Duration::from_secs(1),
        retry_grace: chrono::Duration::zero(),
        who: "test@host".into(),
        membership: None,
    }
}

async fn decide_with(
    mem: &MemRegistry,
    certname: &str,
    pem: &[u8],
    policy: &Policy,
    mode: Mode,
) -> Result<Approval, Rejection> {
    let d = decider(mem, policy);
    let ev = d.evaluate(certname, pem, mode, now()).await.unwrap();
    match ev.verdict {
        Ok(a) => d
            .consume(&a, &ev.csr_sha256, now())
            .await
            .unwrap()
            .map(|_| a),
        Err(r) => Err(r),
    }
}

async fn decide(mem: &MemRegistry, certname: &str, pem: &[u8]) -> Result<Approval, Rejection> {
    decide_with(mem, certname, pem, &world().policy, Mode::Hook).await
}

async fn with_group(g: EnrollmentGroup) -> MemRegistry {
    let mem = MemRegistry::default();
    mem.create_group(&g).await.unwrap();
    mem
}

#[track_caller]
fn refused(v: &Result<Approval, Rejection>, check: Check, reason: &str) {
    match v {
        Err(r) if r.check == check && r.reason.contains(reason) => {}
        _ => panic!("expected {check:?} containing {reason:?}, got {v:?}"),
    }
}

#[tokio::test]
async fn a_member_is_approved_once_and_recorded_in_a_slot_and_a_claim() {
    let mem = with_group(group(5)).await;
    let (name, pem) = good(1);
    let a = decide(&mem, &name, &pem).await.unwrap();
    assert!(matches!(a.basis, Basis::Group(_)) && !a.retry);
    assert_eq!(a.instance_id.as_deref(), Some(iid(1).as_str()));
    let m = mem.get_member(GROUP, 0).await.unwrap().unwrap();
    assert_eq!(
        (m.certname.as_str(), m.instance_id.as_str()),
        (name.as_str(), iid(1).as_str())
    );
    assert_eq!(m.csr_sha256, csr::fingerprint(&pem));
    let holder = mem.claims.lock().unwrap()[&iid(1)].clone();
    assert!(holder.starts_with(&format!("{name} attempt=")), "{holder}");
}

#[tokio::test]
async fn attack_second_csr_for_an_enrolled_instance_is_refused_without_using_a_slot() {
    let mem = with_group(group(5)).await;
    let (name, pem) = good(1);
    decide(&mem, &name, &pem).await.unwrap();
    // The very same CSR again (a decommissioned node's saved request) and a new key's CSR.
    let again = decide(&mem, &name, &pem).await;
    refused(&again, Check::Consume, "already enrolled as web-i-");
    let other_key = member_csr(&name, &[GROUP], &doc(1)).build(&craft::rsa_key(2048));
    refused(
        &decide(&mem, &name, &other_key).await,
        Check::Consume,
        "already enrolled",
    );
    assert_eq!(mem.list_slots(GROUP).await.unwrap(), vec![0]);
}

#[tokio::test]
async fn attack_sweep_mode_gets_no_retry_either() {
    let mem = with_group(group(5)).await;
    let (name, pem) = good(1);
    decide(&mem, &name, &pem).await.unwrap();
    // A `consume` refusal: the sweep does not evict it, so a request the hook approved a moment
    // ago is still there for the CA to sign.
    let v = decide_with(&mem, &name, &pem, &world().policy, Mode::Sweep).await;
    refused(&v, Check::Consume, "already enrolled");
}

#[tokio::test]
async fn attack_an_instance_enrolled_by_a_registration_cannot_join_a_group() {
    let mem = with_group(group(5)).await;
    // The shared claim namespace: instances/<id> holds a registration's certname.
    let mut r = Registration::new(
        "0b7d3c59-5b4f-4f8e-9f0e-2d7f1f1f4a11",
        &sha256_hex(b"s"),
        "t",
        now(),
        chrono::Duration::minutes(30),
    );
    r.identity = Some(IdentityBinding {
        account_id: MOTO_ACCOUNT.into(),
        region: REGION.into(),
    });
    mem.create(&r).await.unwrap();
    mem.claim_instance(&iid(1), &r.certname).await.unwrap();
    let (name, pem) = good(1);
    refused(
        &decide(&mem, &name, &pem).await,
        Check::Identity,
        "already enrolled as 0b7d3c59",
    );
}

#[tokio::test]
async fn attack_another_image_account_or_region_is_refused() {
    let mem = with_group(group(5)).await;
    let key = &world().key;
    let mut d = doc(2);
    d.image_id = OTHER_AMI.into();
    let name = format!("{GROUP}-{}", d.instance_id);
    refused(
        &decide(&mem, &name, &member_csr(&name, &[GROUP], &d).build(key)).await,
        Check::Identity,
        "imageId `ami-0fedcba9876543210` is not the enrollment group `web`'s",
    );
    // Another account the signer does accept (for other groups): still not this group's.
    let mut d = doc(3);
    d.account_id = "210987654321".into();
    let name = format!("{GROUP}-{}", d.instance_id);
    refused(
        &decide(&mem, &name, &member_csr(&name, &[GROUP], &d).build(key)).await,
        Check::Identity,
        "accountId `210987654321` is not the enrollment group",
    );
    // An account the signer does not know at all.
    let mut d = doc(4);
    d.account_id = "999999999999".into();
    let name = format!("{GROUP}-{}", d.instance_id);
    refused(
        &decide(&mem, &name, &member_csr(&name, &[GROUP], &d).build(key)).await,
        Check::Identity,
        "not on policy.identity.accounts",
    );
    assert!(mem.claims.lock().unwrap().is_empty(), "nothing claimed");
    assert!(mem.list_slots(GROUP).await.unwrap().is_empty());
}

#[tokio::test]
async fn attack_revoked_or_expired_group_is_refused() {
    let mut g = group(5);
    g.revoked = Some(Revocation {
        at: now(),
        by: "ops@ws".into(),
    });
    let mem = with_group(g).await;
    let (name, pem) = good(1);
    refused(
        &decide(&mem, &name, &pem).await,
        Check::Group,
        "was revoked at",
    );
    let mut g = group(5);
    g.created_at = now() - chrono::Duration::days(2);
    g.expires_at = now() - chrono::Duration::days(1);
    let mem = with_group(g).await;
    refused(&decide(&mem, &name, &pem).await, Check::Group, "expired at");
    assert!(mem.claims.lock().unwrap().is_empty());
}

#[tokio::test]
async fn attack_full_group_is_refused_and_slots_never_exceed_the_maximum() {
    let mem = with_group(group(2)).await;
    for n in 1..=2 {
        let (name, pem) = good(n);
        decide(&mem, &name, &pem).await.unwrap();
    }
    let (name, pem) = good(3);
    refused(
        &decide(&mem, &name, &pem).await,
        Check::Group,
        "is full (2 of 2 members)",
    );
    assert_eq!(mem.list_slots(GROUP).await.unwrap(), vec![0, 1]);
    assert!(!mem.claims.lock().unwrap().contains_key(&iid(3)));
}

#[tokio::test]
async fn attack_certname_not_matching_the_document_is_refused() {
    let mem = with_group(group(5)).await;
    let key = &world().key;
    // Instance 2's genuine document under instance 1's name, and a free-form name.
    for name in [format!("{GROUP}-{}", iid(1)), format!("db-{}", iid(2))] {
        let pem = member_csr(&name, &[GROUP], &doc(2)).build(key);
        refused(
            &decide(&mem, &name, &pem).await,
            Check::Identity,
            &format!("is not `web-{}`", iid(2)),
        );
    }
    // A name outside both forms never gets that far.
    let pem = member_csr("web.example.net", &[GROUP], &doc(2)).build(key);
    refused(
        &decide(&mem, "web.example.net", &pem).await,
        Check::Input,
        "neither a lowercase hyphenated UUID",
    );
    assert!(mem.claims.lock().unwrap().is_empty());
}

#[tokio::test]
async fn attack_instance_launched_before_the_group_existed_is_refused() {
    let mem = with_group(group(5)).await;
    let mut d = doc(1);
    d.pending_time = now() - chrono::Duration::hours(3);
    let name = format!("{GROUP}-{}", d.instance_id);
    let pem = member_csr(&name, &[GROUP], &d).build(&world().key);
    refused(
        &decide(&mem, &name, &pem).await,
        Check::Identity,
        "instances launched before the group existed cannot join it",
    );
}

#[tokio::test]
async fn attack_extensions_secrets_and_attribute_tricks_are_refused() {
    let mem = with_group(group(5)).await;
    let key = &world().key;
    let d = doc(1);
    let name = format!("{GROUP}-{}", d.instance_id);
    // pp_role other than the group's.
    let mut s = member_csr(&name, &[GROUP], &d);
    s.extensions[1].1 = craft::utf8_ext("db");
    refused(
        &decide(&mem, &name, &s.build(key)).await,
        Check::Extensions,
        "differs from the group's `web`",
    );
    // An extension the group does not grant.
    let s =
        member_csr(&name, &[GROUP], &d).ext("1.3.6.1.4.1.34380.1.1.12", craft::utf8_ext("prod"));
    refused(
        &decide(&mem, &name, &s.build(key)).await,
        Check::Extensions,
        "not allowed by the group",
    );
    // pp_instance_id of another instance.
    let mut s = member_csr(&name, &[GROUP], &d);
    s.extensions[0].1 = craft::utf8_ext(&iid(9));
    refused(
        &decide(&mem, &name, &s.build(key)).await,
        Check::Extensions,
        "pp_instance_id value",
    );
    // A challengePassword beside the group.
    let mut s = member_csr(&name, &[GROUP], &d);
    s.challenge = vec![(0x13, b"x".to_vec())];
    refused(
        &decide(&mem, &name, &s.build(key)).await,
        Check::Secret,
        "group members carry no secret",
    );
    // Two groups named, or a malformed group name.
    let s = member_csr(&name, &[GROUP, "db"], &d);
    refused(
        &decide(&mem, &name, &s.build(key)).await,
        Check::Input,
        "2 enrollment group values",
    );
    let s = member_csr(&name, &["../web"], &d);
    refused(
        &decide(&mem, &name, &s.build(key)).await,
        Check::Input,
        "group name",
    );
    // No identity proof at all.
    let mut s = member_csr(&name, &[GROUP], &d);
    s.attributes
        .retain(|(o, _)| o != csr::OID_INSTANCE_IDENTITY);
    refused(
        &decide(&mem, &name, &s.build(key)).await,
        Check::Identity,
        "must carry the instance identity proof",
    );
    // A document signed by an impostor key with AWS's certificate details.
    let mut s = member_csr(&name, &[GROUP], &d);
    let forged: String = world()
        .aws
        .impostor()
        .sign(&d.render())
        .split_whitespace()
        .collect();
    s.attributes
        .retain(|(o, _)| o != csr::OID_INSTANCE_IDENTITY);
    s.attributes.push((
        csr::OID_INSTANCE_IDENTITY.into(),
        craft::tlv(crate::der::PRINTABLE_STRING, forged.as_bytes()),
    ));
    refused(
        &decide(&mem, &name, &s.build(key)).await,
        Check::Identity,
        "does not verify",
    );
    // A group that does not exist.
    let s = member_csr(&format!("db-{}", iid(1)), &["db"], &d);
    refused(
        &decide(&mem, &format!("db-{}", iid(1)), &s.build(key)).await,
        Check::Group,
        "no enrollment group `db`",
    );
    assert!(mem.claims.lock().unwrap().is_empty());
}

#[tokio::test]
async fn group_enrollment_is_off_unless_the_policy_turns_it_on() {
    let mem = with_group(group(5)).await;
    let (name, pem) = good(1);
    let mut off = world().policy.clone();
    off.groups.enabled = false;
    refused(
        &decide_with(&mem, &name, &pem, &off, Mode::Hook).await,
        Check::Group,
        "policy.groups.enabled is off",
    );
}

#[tokio::test]
async fn a_crash_between_claim_and_slot_fails_closed() {
    let mem = with_group(group(5)).await;
    let (name, pem) = good(1);
    let d = decider(&mem, &world().policy);
    let ev = d.evaluate(&name, &pem, Mode::Hook, now()).await.unwrap();
    let a = ev.verdict.unwrap();
    mem.slots_down
        .store(true, std::sync::atomic::Ordering::SeqCst);
    assert!(d.consume(&a, &ev.csr_sha256, now()).await.is_err());
    mem.slots_down
        .store(false, std::sync::atomic::Ordering::SeqCst);
    // The instance is claimed, holds no slot, and is not signed by a second attempt.
    refused(
        &decide(&mem, &name, &pem).await,
        Check::Consume,
        "already enrolled",
    );
    assert!(mem.list_slots(GROUP).await.unwrap().is_empty());
}

#[tokio::test]
async fn a_revocation_while_deciding_refuses_after_the_slot() {
    let mem = with_group(group(5)).await;
    let (name, pem) = good(1);
    let d = decider(&mem, &world().policy);
    let ev = d.evaluate(&name, &pem, Mode::Hook, now()).await.unwrap();
    let a = ev.verdict.unwrap();
    let (mut g, v) = mem.get_group(GROUP).await.unwrap().unwrap();
    g.revoked = Some(Revocation {
        at: now(),
        by: "ops".into(),
    });
    mem.update_group(&g, &v).await.unwrap();
    let v = d.consume(&a, &ev.csr_sha256, now()).await.unwrap();
    refused(&v.map(|_| a), Check::Group, "became revoked while deciding");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn many_signers_racing_never_exceed_the_maximum() {
    let mem = Arc::new(with_group(group(5)).await);
    let mut tasks = tokio::task::JoinSet::new();
    for n in 1..=12u32 {
        let mem = Arc::clone(&mem);
        let (name, pem) = good(n);
        tasks.spawn(async move { decide(&mem, &name, &pem).await.is_ok() });
    }
    let mut approved = 0;
    while let Some(ok) = tasks.join_next().await {
        approved += usize::from(ok.unwrap());
    }
    assert_eq!(approved, 5);
    assert_eq!(mem.list_slots(GROUP).await.unwrap(), vec![0, 1, 2, 3, 4]);
}

mod asg_membership {
    //! `policy.groups.asg_membership`, with a scripted Auto Scaling.
    use super::*;
    use crate::asg::{AsgInstance, Membership};
    use crate::decide::DecideError;

    struct Scripted(Result<Option<AsgInstance>, String>);

    #[async_trait::async_trait]
    impl Membership for Scripted {
        async fn instance(
            &self,
            region: &str,
            instance_id: &str,
        ) -> Result<Option<AsgInstance>, String> {
            assert_eq!(region, REGION, "asked in the group's region");
            self.0.clone().map(|o| {
                o.map(|mut i| {
                    i.instance_id = instance_id.to_owned();
                    i
                })
            })
        }
    }

    fn in_asg(group: &str, state: &str, lt: Option<&str>) -> Scripted {
        Scripted(Ok(Some(AsgInstance {
            instance_id: String::new(),
            group: group.into(),
            lifecycle_state: state.into(),
            launch_template_id: lt.map(str::to_owned),
        })))
    }

    fn policy() -> Policy {
        let mut p = world().policy.clone();
        p.groups.asg_membership = true;
        p
    }

    async fn decide_asg(
        mem: &MemRegistry,
        asg: Option<&Scripted>,
    ) -> Result<Result<Approval, Rejection>, DecideError> {
        let p = policy();
        let mut d = decider(mem, &p);
        d.membership = asg.map(|a| a as &dyn Membership);
        let (name, pem) = good(1);
        let ev = d.evaluate(&name, &pem, Mode::Hook, now()).await?;
        Ok(match ev.verdict {
            Ok(a) => d.consume(&a, &ev.csr_sha256, now()).await?.map(|_| a),
            Err(r) => Err(r),
        })
    }

    #[tokio::test]
    async fn a_current_member_of_the_asg_from_the_template_is_approved() {
        for state in ["Pending", "Pending:Wait", "InService"] {
            let mem = with_group(group(5)).await;
            let asg = in_asg("web-asg", state, Some("lt-0123456789abcdef0"));
            let v = decide_asg(&mem, Some(&asg)).await.unwrap();
            assert!(v.is_ok(), "{state}: {v:?}");
        }
    }

    #[tokio::test]
    async fn attack_an_instance_outside_the_asg_is_refused_before_any_write() {
        for (asg, why) in [
            (Scripted(Ok(None)), "is in no Auto Scaling group"),
            (
                in_asg("db-asg", "InService", Some("lt-0123456789abcdef0")),
                "belongs to Auto Scaling group `db-asg`, not `web-asg`",
            ),
            (
                in_asg("web-asg", "Terminating", Some("lt-0123456789abcdef0")),
                "is `Terminating`",
            ),
            (
                in_asg("web-asg", "InService", Some("lt-0fedcba9876543210")),
                "not the group's lt-0123456789abcdef0",
            ),
            (in_asg("web-asg", "InService", None), "(none reported)"),
        ] {
            let mem = with_group(group(5)).await;
            let v = decide_asg(&mem, Some(&asg)).await.unwrap();
            refused(&v, Check::Group, why);
            assert!(mem.claims.lock().unwrap().is_empty(), "{why}");
        }
        // On, but no client: refused, never waved through.
        let mem = with_group(group(5)).await;
        refused(
            &decide_asg(&mem, None).await.unwrap(),
            Check::Group,
            "no Auto Scaling client",
        );
        // A group that names no ASG cannot be checked: refused.
        let mut g = group(5);
        g.asg_name = None;
        let mem = with_group(g).await;
        let asg = in_asg("web-asg", "InService", Some("lt-0123456789abcdef0"));
        refused(
            &decide_asg(&mem, Some(&asg)).await.unwrap(),
            Check::Group,
            "names no Auto Scaling group",
        );
    }

    #[tokio::test]
    async fn an_auto_scaling_failure_signs_nothing() {
        let mem = with_group(group(5)).await;
        let asg = Scripted(Err("AccessDenied".into()));
        let e = decide_asg(&mem, Some(&asg)).await.unwrap_err();
        assert!(e.to_string().contains("AccessDenied"), "{e}");
        assert!(mem.claims.lock().unwrap().is_empty());
    }
}
