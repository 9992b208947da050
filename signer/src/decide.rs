//! The decision. **The signer never approves a CSR whose certname has no unexpired, unconsumed
//! registration, and it consumes that registration (compare-and-swap) before anything is signed.**
//!
//! Checks, all of which must pass, in this order (the first failure is the reason reported):
//! 1. input: the certname is one the conductor issues; the CSR is under the size cap and parses;
//! 2. csr: strict DER in one strict PEM block (the bytes OpenSSL verifies are the bytes every
//!    check reads); self-signature verifies with an allowed hash; RSA key of the policy's size
//!    with an odd exponent >= the floor and a modulus without small or structural factors, or an
//!    EC key on an allowed named curve; subject exactly one RDN holding one CN = `<certname>`
//!    (see [`crate::csr`] and signer/README.md, "Key, signature and subject policy");
//! 3. registration: exists, unexpired, unconsumed;
//! 4. secret: exactly one challengePassword, whose SHA-256 matches (constant time);
//! 5. forbidden: no subjectAltName other than `DNS:<certname>`, nothing from `1.3.6.1.4.1.34380.1.3.*`;
//! 6. extensions: each requested extension is allowed by the registration with that exact value;
//!    `pp_instance_id` equals the registered instance id; `pp_uuid` equals the certname;
//! 7. identity: exactly one instance identity proof (attribute [`csr::OID_INSTANCE_IDENTITY`])
//!    when the registration requires one; it verifies against the pinned AWS certificates
//!    ([`crate::identity`]), and its document's `instanceId` equals the registration's instance id
//!    (when recorded) and the CSR's `pp_instance_id` (when sent), `accountId` is on
//!    `policy.identity.accounts` and equals the registration's, `region` and `imageId` equal the
//!    registration's, and `pendingTime` falls within the registration's lifetime (± clock skew).
//!    A legacy (format 1) registration without a proof passes only with
//!    `policy.identity.accept_legacy_registrations`;
//! 8. consume: the proven instance id is claimed in the registry (create-only: one instance
//!    enrolls once, across all registrations), then the registration is marked consumed (with the
//!    CSR's SHA-256 and the instance id) by a conditional write.
//!
//! **Enrollment groups.** A CSR carrying the group attribute ([`csr::OID_ENROLLMENT_GROUP`]) is
//! decided against the group instead of a registration ([`check_group`], `Decider::enroll`): with
//! `policy.groups.enabled`, the group exists and is active; no challengePassword; exactly one
//! identity proof whose document matches the group's account (also on
//! `policy.identity.accounts`), Region and images and was launched during the group's lifetime;
//! the certname is `<group>-<instanceId>` ([`schemas::group::member_certname`]); the extensions
//! are the group's; with `policy.groups.asg_membership`, Auto Scaling shows the instance in the
//! group's ASG ([`crate::asg`]); the group is not full. Then, create-only and in this order: the
//! instance claim (a holder unique to this attempt), a free member slot, and a fresh read of the
//! group (revoked meanwhile: refused). No retry rule applies to members.
//!
//! **Retry rule (sweep only).** If a registration is already consumed *by this exact CSR* (same
//! SHA-256 fingerprint) and is still unexpired, the sweep may sign again: this covers a hook that
//! consumed and then ran out of time, and a sweep whose PUT failed after consuming. A different CSR
//! for the same certname is a replay and is refused. The approval ([`Approval::retry`]) is only a
//! candidate: the sweep signs it only when the CA's records show that **no certificate was ever
//! issued** under the name (`sweep::retry_allowed`, [`crate::ca::Ca::issued`]), and refuses when
//! that cannot be established. So a node whose certificate was cleaned (decommissioned) is never
//! signed again by resubmitting its old CSR.

use crate::csr::{self, Csr, CsrError};
use crate::identity::TrustedCerts;
use chrono::{DateTime, Utc};
use schemas::group::{EnrollmentGroup, GroupState, Member};
use schemas::oids::{registrable_extension, short_name};
use schemas::registration::{Consumption, Registration, State, check_certname};
use schemas::registry::{Registry, RegistryError, Version};
use schemas::signer_config::Policy;
use serde::Serialize;
use std::collections::BTreeSet;
use std::time::Duration;

/// Which check failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Check {
    Input,
    Csr,
    Registration,
    Secret,
    Forbidden,
    Extensions,
    Identity,
    /// Enrollment groups: the group named by the CSR is missing, revoked, expired or full, or
    /// group enrollment is off.
    Group,
    /// The certname is retired: `conductor reap` found its instance terminated. Never signed again.
    Retired,
    Consume,
    Ca,
}

impl Check {
    /// The check's name as the audit log and `--output json` write it (`identity`, `secret`, …).
    pub fn name(self) -> String {
        serde_json::to_value(self)
            .ok()
            .and_then(|v| v.as_str().map(str::to_owned))
            .unwrap_or_default()
    }
}

/// A refusal: which check, and why (never containing a secret).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejection {
    pub check: Check,
    pub reason: String,
}

fn reject<T>(check: Check, reason: impl Into<String>) -> Result<T, Rejection> {
    Err(Rejection {
        check,
        reason: reason.into(),
    })
}

/// Who is deciding; the sweep may use the retry rule, the hook may not.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    Hook,
    Sweep,
}

/// What an approval rests on.
#[derive(Debug, Clone)]
pub enum Basis {
    /// A registration, and that record's version (for the CAS).
    Registration {
        registration: Registration,
        version: Version,
    },
    /// Membership of an enrollment group, proven by the identity document.
    Group(GroupJoin),
}

/// A CSR that passed every check of a group: what its enrollment records.
#[derive(Debug, Clone)]
pub struct GroupJoin {
    pub group: EnrollmentGroup,
    pub certname: String,
    pub instance_id: String,
    pub image_id: String,
    pub pending_time: DateTime<Utc>,
}

/// An approved CSR and what it rests on.
#[derive(Debug, Clone)]
pub struct Approval {
    pub basis: Basis,
    /// The registration was already consumed by this very CSR (retry rule); nothing to consume.
    /// Never for group members: only the call that claimed the instance signs it.
    pub retry: bool,
    /// The instance id the CSR's identity proof showed, if it carried one.
    pub instance_id: Option<String>,
    /// Said in the audit line of the approval (e.g. a legacy registration signed without proof).
    pub note: Option<String>,
}

/// The outcome of evaluating one CSR.
#[derive(Debug)]
pub struct Evaluation {
    pub certname: String,
    /// SHA-256 of the CSR's DER (Puppet's fingerprint), or of the raw input when it is not a CSR.
    pub csr_sha256: String,
    pub verdict: Result<Approval, Rejection>,
}

/// A failure that is not the CSR's fault (registry unreachable, deadline): nothing is signed and
/// the process exits non-zero; the next run decides again.
#[derive(Debug, thiserror::Error)]
pub enum DecideError {
    #[error(transparent)]
    Registry(#[from] RegistryError),
    #[error("registry {location} did not answer within {limit:?}")]
    RegistryTimeout { location: String, limit: Duration },
    #[error("{0}")]
    AutoScaling(String),
}

/// Decides CSRs against one registry and one policy.
pub struct Decider<'a> {
    pub registry: &'a dyn Registry,
    pub policy: &'a Policy,
    /// Limit for each registry call.
    pub registry_deadline: Duration,
    /// Recorded in the consumption: `autosign@host`, `sweep@host`.
    pub who: String,
    /// The pinned AWS certificates identity proofs are verified against.
    pub trust: &'a TrustedCerts,
    /// How long after a consumption the sweep may sign the same CSR again (retry rule). Keeps the
    /// sweep from racing the CA signing right after the hook that consumed it exited 0.
    pub retry_grace: chrono::Duration,
    /// Auto Scaling, asked when `policy.groups.asg_membership` is on (`None`: every group member
    /// is then refused).
    pub membership: Option<&'a dyn crate::asg::Membership>,
}

impl Decider<'_> {
    async fn bounded<T>(
        &self,
        fut: impl std::future::Future<Output = Result<T, RegistryError>>,
    ) -> Result<T, DecideError> {
        match tokio::time::timeout(self.registry_deadline, fut).await {
            Ok(r) => Ok(r?),
            Err(_) => Err(DecideError::RegistryTimeout {
                location: self.registry.location(),
                limit: self.registry_deadline,
            }),
        }
    }

    /// Run checks 1–6 (no write). `Err` only for infrastructure failures.
    pub async fn evaluate(
        &self,
        certname: &str,
        pem: &[u8],
        mode: Mode,
        now: DateTime<Utc>,
    ) -> Result<Evaluation, DecideError> {
        let csr_sha256 = if pem.len() > self.policy.max_csr_bytes {
            hex::encode(openssl::sha::sha256(pem))
        } else {
            csr::fingerprint(pem)
        };
        let mut ev = Evaluation {
            certname: certname.to_owned(),
            csr_sha256,
            verdict: reject(Check::Input, "not evaluated"),
        };
        // Checks 1-2 need no registry.
        let csr = match self.offline_checks(certname, pem) {
            Ok(c) => c,
            Err(r) => {
                ev.verdict = Err(r);
                return Ok(ev);
            }
        };
        ev.csr_sha256.clone_from(&csr.sha256);
        if !csr.group.is_empty() {
            if let Some(r) = self.retired(certname).await? {
                ev.verdict = Err(r);
                return Ok(ev);
            }
            ev.verdict = self.evaluate_group(&csr, certname, now).await?;
            return Ok(ev);
        }
        if let Err(e) = check_certname(certname) {
            ev.verdict = reject(
                Check::Input,
                format!("certname {e}, and the CSR names no enrollment group"),
            );
            return Ok(ev);
        }
        // The retirement and the registration are read together (one round trip of latency in
        // the hook); a retirement refuses whatever the registration says, and either read
        // failing is an error (fail closed).
        let (retired, found) = tokio::join!(
            self.retired(certname),
            self.bounded(self.registry.get(certname))
        );
        if let Some(r) = retired? {
            ev.verdict = Err(r);
            return Ok(ev);
        }
        let Some((reg, version)) = found? else {
            ev.verdict = reject(
                Check::Registration,
                format!(
                    "no registration for `{certname}` in {}",
                    self.registry.location()
                ),
            );
            return Ok(ev);
        };
        ev.verdict = check_against(
            &csr,
            certname,
            &reg,
            self.policy,
            mode,
            now,
            self.retry_grace,
        )
        .and_then(|retry| {
            let proof = check_identity(&csr, &reg, self.policy, self.trust, now)?;
            Ok(Approval {
                basis: Basis::Registration {
                    registration: reg,
                    version,
                },
                retry,
                instance_id: proof.instance_id,
                note: proof.note,
            })
        });
        Ok(ev)
    }

    fn offline_checks(&self, certname: &str, pem: &[u8]) -> Result<Csr, Rejection> {
        if check_certname(certname).is_err()
            && schemas::group::parse_member_certname(certname).is_none()
        {
            // The CA has already validated the syntax; only registered (UUID) names and group
            // member names (`<group>-<instance-id>`) can pass.
            return reject(
                Check::Input,
                format!(
                    "certname `{}` is neither a lowercase hyphenated UUID (a registration) nor `<group>-<instance-id>` (an enrollment group member)",
                    truncate(certname)
                ),
            );
        }
        let csr = csr::parse(pem, self.policy).map_err(|e| Rejection {
            check: match e {
                CsrError::TooLarge(..) | CsrError::Malformed(_) => Check::Input,
                _ => Check::Csr,
            },
            reason: e.to_string(),
        })?;
        if csr.cn != certname {
            return reject(
                Check::Csr,
                format!(
                    "CSR subject CN `{}` is not the certname `{certname}`",
                    truncate(&csr.cn)
                ),
            );
        }
        Ok(csr)
    }

    /// Checks for a CSR that names an enrollment group (no write).
    async fn evaluate_group(
        &self,
        csr: &Csr,
        certname: &str,
        now: DateTime<Utc>,
    ) -> Result<Result<Approval, Rejection>, DecideError> {
        let name = match group_name(csr, self.policy) {
            Ok(n) => n,
            Err(r) => return Ok(Err(r)),
        };
        let Some((group, _)) = self.bounded(self.registry.get_group(&name)).await? else {
            return Ok(reject(
                Check::Group,
                format!(
                    "no enrollment group `{name}` in {}",
                    self.registry.location()
                ),
            ));
        };
        let join = match check_group(csr, certname, &group, self.policy, self.trust, now) {
            Ok(j) => j,
            Err(r) => return Ok(Err(r)),
        };
        if self.policy.groups.asg_membership {
            let Some(asg) = self.membership else {
                return Ok(reject(
                    Check::Group,
                    "policy.groups.asg_membership is on but this signer has no Auto Scaling client",
                ));
            };
            let found = match tokio::time::timeout(
                self.registry_deadline,
                asg.instance(&group.region, &join.instance_id),
            )
            .await
            {
                Ok(Ok(found)) => found,
                Ok(Err(e)) => return Err(DecideError::AutoScaling(e)),
                Err(_) => {
                    return Err(DecideError::AutoScaling(format!(
                        "Auto Scaling did not answer within {:?} for {}",
                        self.registry_deadline, join.instance_id
                    )));
                }
            };
            if let Err(r) = crate::asg::check(&group, &join.instance_id, found.as_ref()) {
                return Ok(Err(r));
            }
        }
        // A cheap refusal before anything is written; the slots decide for real in `enroll`.
        let taken = self.bounded(self.registry.list_slots(&name)).await?.len();
        if taken >= group.max_members as usize {
            return Ok(reject(
                Check::Group,
                format!(
                    "enrollment group `{name}` is full ({taken} of {} members)",
                    group.max_members
                ),
            ));
        }
        let note = format!(
            "enrollment group `{name}`: instance {} from {}",
            join.instance_id, join.image_id
        );
        Ok(Ok(Approval {
            instance_id: Some(join.instance_id.clone()),
            basis: Basis::Group(join),
            retry: false,
            note: Some(note),
        }))
    }

    /// Record a group member, in the order that fails closed (see [`schemas::group`]): claim the
    /// instance (a holder unique to this attempt), take the lowest free slot, read the group
    /// again. Any refusal after the claim leaves the instance claimed and unsigned.
    async fn enroll(
        &self,
        join: &GroupJoin,
        csr_sha256: &str,
        now: DateTime<Utc>,
    ) -> Result<Result<Version, Rejection>, DecideError> {
        let name = join.group.name.as_str();
        let mut nonce = [0u8; 16];
        if let Err(e) = openssl::rand::rand_bytes(&mut nonce) {
            return Ok(reject(
                Check::Consume,
                format!("no randomness for the instance claim: {e}"),
            ));
        }
        let holder = schemas::group::claim_holder(&join.certname, &hex::encode(nonce));
        let got = self
            .bounded(self.registry.claim_instance(&join.instance_id, &holder))
            .await?;
        if got != holder {
            // Enrolled under this very certname (most often: this CSR, approved by the hook a
            // moment ago and not signed by the CA yet, seen by a concurrent sweep): a `consume`
            // refusal, which the sweep never evicts, so the CA still signs the approved request.
            // Under another name (a registration's): the proof names an instance that is not
            // this certname's, an `identity` refusal.
            let held_by = schemas::group::holder_certname(&got);
            let check = if held_by == join.certname {
                Check::Consume
            } else {
                Check::Identity
            };
            return Ok(reject(
                check,
                format!(
                    "instance {} already enrolled as {held_by}; an instance enrolls exactly once",
                    join.instance_id,
                ),
            ));
        }
        let taken: BTreeSet<u32> = self
            .bounded(self.registry.list_slots(name))
            .await?
            .into_iter()
            .collect();
        let mut slot = None;
        for n in (0..join.group.max_members).filter(|n| !taken.contains(n)) {
            let member = Member {
                version: schemas::group::MEMBER_VERSION,
                group: name.to_owned(),
                slot: n,
                instance_id: join.instance_id.clone(),
                certname: join.certname.clone(),
                image_id: join.image_id.clone(),
                pending_time: join.pending_time,
                csr_sha256: csr_sha256.to_owned(),
                enrolled_at: now,
                by: self.who.clone(),
            };
            if self.bounded(self.registry.take_slot(&member)).await? {
                slot = Some(n);
                break;
            }
        }
        let Some(slot) = slot else {
            return Ok(reject(
                Check::Group,
                format!(
                    "enrollment group `{name}` filled up while deciding (all {} slots taken); instance {} stays claimed and unsigned",
                    join.group.max_members, join.instance_id
                ),
            ));
        };
        // Revoked meanwhile? Every enrollment that reads the group after a revocation is refused.
        match self.bounded(self.registry.get_group(name)).await? {
            Some((g, _)) if g.state(now) == GroupState::Active => {
                tracing::info!(group = name, slot, instance_id = %join.instance_id, "enrolled");
                Ok(Ok(Version(format!("{name}/slots/{slot}"))))
            }
            Some((g, _)) => Ok(reject(
                Check::Group,
                format!(
                    "enrollment group `{name}` became {} while deciding; instance {} stays claimed (slot {slot}) and unsigned",
                    g.state(now),
                    join.instance_id
                ),
            )),
            None => Ok(reject(
                Check::Group,
                format!("enrollment group `{name}` disappeared while deciding; not signing"),
            )),
        }
    }

    /// Check 7: mark the registration consumed by this CSR with a compare-and-swap. A `Conflict`
    /// (someone else wrote it since we read it) or `NotFound` is a rejection; other registry errors
    /// are infrastructure failures.
    /// A refusal if `certname` is retired (`Err` when the registry cannot say: fail closed).
    async fn retired(&self, certname: &str) -> Result<Option<Rejection>, DecideError> {
        Ok(self
            .bounded(self.registry.get_retirement(certname))
            .await?
            .map(|(r, _)| Rejection {
                check: Check::Retired,
                reason: format!(
                    "certname retired at {} by {} ({}); a retired certname is never signed again",
                    r.retired_at.to_rfc3339(),
                    r.retired_by,
                    r.reason
                ),
            }))
    }

    /// Consume what the approval rests on, then make sure the certname was not retired
    /// meanwhile (a `conductor reap` racing the decision): the last check before signing.
    pub async fn consume(
        &self,
        approval: &Approval,
        csr_sha256: &str,
        now: DateTime<Utc>,
    ) -> Result<Result<Version, Rejection>, DecideError> {
        let certname = match &approval.basis {
            Basis::Registration { registration, .. } => registration.certname.as_str(),
            Basis::Group(join) => join.certname.as_str(),
        };
        let done = self.consume_basis(approval, csr_sha256, now).await?;
        if done.is_ok()
            && let Some(r) = self.retired(certname).await?
        {
            return Ok(Err(r));
        }
        Ok(done)
    }

    async fn consume_basis(
        &self,
        approval: &Approval,
        csr_sha256: &str,
        now: DateTime<Utc>,
    ) -> Result<Result<Version, Rejection>, DecideError> {
        let (registration, version) = match &approval.basis {
            Basis::Registration {
                registration,
                version,
            } => (registration, version),
            Basis::Group(join) => return self.enroll(join, csr_sha256, now).await,
        };
        let certname = registration.certname.as_str();
        if let Some(iid) = &approval.instance_id {
            let holder = self
                .bounded(self.registry.claim_instance(iid, certname))
                .await?;
            if holder != certname {
                return Ok(reject(
                    Check::Identity,
                    format!(
                        "instance {iid} already enrolled as {holder}; an instance enrolls exactly once"
                    ),
                ));
            }
        }
        if approval.retry {
            return Ok(Ok(version.clone()));
        }
        let mut rec = registration.clone();
        rec.consumed = Some(Consumption {
            at: now,
            by: self.who.clone(),
            csr_sha256: csr_sha256.to_owned(),
            instance_id: approval.instance_id.clone(),
        });
        match self.bounded(self.registry.update(&rec, version)).await {
            Ok(v) => Ok(Ok(v)),
            Err(DecideError::Registry(RegistryError::Conflict(_))) => Ok(reject(
                Check::Consume,
                "registration changed since it was read (another signer consumed it first); not signing",
            )),
            Err(DecideError::Registry(RegistryError::NotFound(_))) => Ok(reject(
                Check::Consume,
                "registration was deleted while deciding; not signing",
            )),
            Err(e) => Err(e),
        }
    }
}

fn truncate(s: &str) -> String {
    if s.chars().count() > 80 {
        format!("{}…", s.chars().take(80).collect::<String>())
    } else {
        s.to_owned()
    }
}

/// Checks 3–6 for a parsed CSR. `Ok(true)` means approved under the retry rule.
pub fn check_against(
    csr: &Csr,
    certname: &str,
    reg: &Registration,
    policy: &Policy,
    mode: Mode,
    now: DateTime<Utc>,
    retry_grace: chrono::Duration,
) -> Result<bool, Rejection> {
    // 3. registration
    let mut retry = false;
    match reg.state(now) {
        State::Pending => {}
        State::Expired => {
            return reject(
                Check::Registration,
                format!("registration expired at {}", reg.expires_at.to_rfc3339()),
            );
        }
        State::Consumed => {
            let c = reg
                .consumed
                .as_ref()
                .expect("consumed state has a consumption");
            let same_csr = mode == Mode::Sweep && c.csr_sha256 == csr.sha256;
            if same_csr && now >= reg.expires_at {
                return reject(
                    Check::Registration,
                    format!(
                        "registration consumed by this CSR but expired at {}",
                        reg.expires_at.to_rfc3339()
                    ),
                );
            } else if same_csr && now - c.at < retry_grace {
                return reject(
                    Check::Registration,
                    format!(
                        "registration consumed by this CSR at {} by {}; left to that signer for {}s before a retry",
                        c.at.to_rfc3339(),
                        c.by,
                        retry_grace.num_seconds()
                    ),
                );
            } else if same_csr {
                // A candidate only: nothing here can see whether the CA issued a certificate for
                // this consumption (it did if the node enrolled and was later cleaned). The sweep
                // signs a retry only once the CA's records show none was ever issued.
                retry = true;
            } else {
                return reject(
                    Check::Registration,
                    format!(
                        "registration already consumed at {} by {} for CSR {} (replay refused)",
                        c.at.to_rfc3339(),
                        c.by,
                        c.csr_sha256
                    ),
                );
            }
        }
    }
    // 4. secret
    match csr.challenge_password() {
        None if csr.challenge_values == 0 => {
            return reject(Check::Secret, "CSR has no challengePassword");
        }
        None => {
            return reject(
                Check::Secret,
                format!(
                    "CSR has {} challengePassword values; exactly one is accepted",
                    csr.challenge_values
                ),
            );
        }
        Some(secret) if !reg.secret_matches(secret) => {
            return reject(
                Check::Secret,
                "challengePassword does not match the registered secret",
            );
        }
        Some(_) => {}
    }
    // 5-6. forbidden, extensions
    let pp_instance = match &reg.instance_id {
        Some(id) => PpInstance::Expect(id.as_str()),
        // Bound by the identity proof instead (check 7 compares it with the document).
        None if policy.instance_id_without_registered || reg.identity.is_some() => PpInstance::Skip,
        None => PpInstance::Refuse,
    };
    check_requested(
        csr,
        certname,
        &reg.allowed_extensions,
        pp_instance,
        "registration",
    )?;
    Ok(retry)
}

/// The group a CSR names: exactly one value of [`csr::OID_ENROLLMENT_GROUP`], a valid name,
/// with group enrollment turned on.
fn group_name(csr: &Csr, policy: &Policy) -> Result<String, Rejection> {
    if !policy.groups.enabled {
        return reject(
            Check::Group,
            "the CSR names an enrollment group and policy.groups.enabled is off; turn it on in signer.yaml to sign group members",
        );
    }
    let [value] = csr.group.as_slice() else {
        return reject(
            Check::Input,
            format!(
                "the CSR carries {} enrollment group values (attribute {}); exactly one is accepted",
                csr.group.len(),
                csr::OID_ENROLLMENT_GROUP
            ),
        );
    };
    let name = String::from_utf8(value.clone()).map_err(|_| Rejection {
        check: Check::Input,
        reason: "the enrollment group attribute is not UTF-8".into(),
    })?;
    schemas::group::check_group_name(&name).map_err(|e| Rejection {
        check: Check::Input,
        reason: e,
    })?;
    Ok(name)
}

/// The CSR's instance identity proof: `None` without one; more than one is refused.
fn single_proof(csr: &Csr) -> Result<Option<&[u8]>, Rejection> {
    match csr.identity.as_slice() {
        [] => Ok(None),
        [one] => Ok(Some(one.as_slice())),
        many => reject(
            Check::Identity,
            format!(
                "the CSR carries {} instance identity proofs; exactly one is accepted",
                many.len()
            ),
        ),
    }
}

/// A proof verified against the pinned AWS certificates, whose document names a usable
/// instance id of an account on `policy.identity.accounts` (registrations and groups alike).
fn verified_proof(
    blob: &[u8],
    trust: &TrustedCerts,
    policy: &Policy,
) -> Result<crate::identity::Verified, Rejection> {
    let v = crate::identity::verify(blob, trust).map_err(|e| Rejection {
        check: Check::Identity,
        reason: e,
    })?;
    let d = &v.doc;
    if schemas::registration::check_instance_id(&d.instance_id).is_err() {
        return reject(
            Check::Identity,
            format!(
                "signed identity document has an unusable instanceId `{}`",
                truncate(&d.instance_id)
            ),
        );
    }
    if !policy.identity.accounts.contains(&d.account_id) {
        return reject(
            Check::Identity,
            format!(
                "account {} of instance {} is not on policy.identity.accounts; add it to signer.yaml if that account's instances may enroll",
                truncate(&d.account_id),
                d.instance_id
            ),
        );
    }
    Ok(v)
}

/// The instance was launched (`pendingTime`) within `lifetime` (creation .. the earlier of
/// expiry and now), give or take `policy.identity.clock_skew`. `whose` names the lifetime in
/// the refusal ("the registration's"); `hint` is appended to it.
fn check_launch_time(
    d: &crate::identity::IdentityDocument,
    (created, expires): (DateTime<Utc>, DateTime<Utc>),
    now: DateTime<Utc>,
    policy: &Policy,
    whose: &str,
    hint: &str,
) -> Result<(), Rejection> {
    let skew = chrono::Duration::from_std(policy.identity.clock_skew)
        .unwrap_or_else(|_| chrono::Duration::minutes(2));
    if d.pending_time < created - skew || d.pending_time > expires.min(now) + skew {
        return reject(
            Check::Identity,
            format!(
                "instance {} was launched at {} (pendingTime), outside {whose} lifetime {} .. {} (± {}s clock skew){hint}",
                d.instance_id,
                d.pending_time.to_rfc3339(),
                created.to_rfc3339(),
                expires.to_rfc3339(),
                skew.num_seconds()
            ),
        );
    }
    Ok(())
}

/// Every check of a group member that needs no write: the group is active; no secret; the
/// identity proof verifies and its document matches the group (account, Region, image, launch
/// time); the certname is the scheme's for the document's instance id; the extensions are the
/// group's.
pub fn check_group(
    csr: &Csr,
    certname: &str,
    group: &EnrollmentGroup,
    policy: &Policy,
    trust: &TrustedCerts,
    now: DateTime<Utc>,
) -> Result<GroupJoin, Rejection> {
    let name = &group.name;
    match group.state(now) {
        GroupState::Active => {}
        GroupState::Revoked => {
            let r = group
                .revoked
                .as_ref()
                .expect("revoked state has a revocation");
            return reject(
                Check::Group,
                format!(
                    "enrollment group `{name}` was revoked at {} by {}",
                    r.at.to_rfc3339(),
                    r.by
                ),
            );
        }
        GroupState::Expired => {
            return reject(
                Check::Group,
                format!(
                    "enrollment group `{name}` expired at {}",
                    group.expires_at.to_rfc3339()
                ),
            );
        }
    }
    if csr.challenge_values > 0 {
        return reject(
            Check::Secret,
            "the CSR names an enrollment group and also carries a challengePassword; group members carry no secret (is the user-data mixing `conductor register` and `conductor group user-data`?)",
        );
    }
    let Some(blob) = single_proof(csr)? else {
        return reject(
            Check::Identity,
            format!(
                "enrollment group members must carry the instance identity proof (attribute {}) and the CSR has none; was bootcfg run with `puppet.instance_identity: true` on EC2?",
                csr::OID_INSTANCE_IDENTITY
            ),
        );
    };
    let v = verified_proof(blob, trust, policy)?;
    let d = &v.doc;
    let mismatch = |what: &str, got: &str, want: &str| {
        reject::<GroupJoin>(
            Check::Identity,
            format!(
                "signed identity document {what} `{}` is not the enrollment group `{name}`'s {} (instance {}, signer {} serial {})",
                truncate(got),
                truncate(want),
                d.instance_id,
                v.signer_region,
                v.signer_serial
            ),
        )
    };
    if d.account_id != group.account_id {
        return mismatch("accountId", &d.account_id, &group.account_id);
    }
    if d.region != group.region {
        return mismatch("region", &d.region, &group.region);
    }
    if !group.image_ids.contains(&d.image_id) {
        return mismatch("imageId", &d.image_id, &group.image_ids.join(", "));
    }
    let want = group.member_certname(&d.instance_id);
    if certname != want {
        return reject(
            Check::Identity,
            format!(
                "certname `{}` is not `{want}`, the name enrollment group `{name}` gives instance {} (`<group>-<instance-id>`)",
                truncate(certname),
                d.instance_id
            ),
        );
    }
    check_launch_time(
        d,
        (group.created_at, group.expires_at),
        now,
        policy,
        &format!("enrollment group `{name}`'s"),
        "; instances launched before the group existed cannot join it",
    )?;
    check_requested(
        csr,
        certname,
        &group.extensions,
        PpInstance::Expect(&d.instance_id),
        "group",
    )?;
    Ok(GroupJoin {
        group: group.clone(),
        certname: want,
        instance_id: d.instance_id.clone(),
        image_id: d.image_id.clone(),
        pending_time: d.pending_time,
    })
}

/// What `pp_instance_id` in a CSR must be.
#[derive(Debug, Clone, Copy)]
enum PpInstance<'a> {
    /// Exactly this instance id.
    Expect(&'a str),
    /// Checked elsewhere (against the identity document).
    Skip,
    /// Not allowed: nothing to check it against.
    Refuse,
}

/// Checks 5-6: no subjectAltName other than `DNS:<certname>`, nothing from the authorization
/// arc, each extension requested once and allowed by `allowed` with that exact value,
/// `pp_uuid` = certname, `pp_instance_id` as `pp_instance` says. `source` names what allows
/// them (`registration`, `group`) in reasons.
fn check_requested(
    csr: &Csr,
    certname: &str,
    allowed: &std::collections::BTreeMap<String, String>,
    pp_instance: PpInstance<'_>,
    source: &str,
) -> Result<(), Rejection> {
    // 5. forbidden: SAN other than DNS:<certname>, authorization arc
    for ext in &csr.extensions {
        if ext.oid == csr::OID_SUBJECT_ALT_NAME {
            match csr::san_dns_names(&ext.value) {
                Ok(names) if !names.is_empty() && names.iter().all(|n| n == certname) => {}
                Ok(names) => {
                    let shown: Vec<String> = names
                        .iter()
                        .map(|n| format!("DNS:{}", truncate(n)))
                        .collect();
                    return reject(
                        Check::Forbidden,
                        format!(
                            "subjectAltName [{}] asks for more than DNS:{certname}",
                            shown.join(", ")
                        ),
                    );
                }
                Err(e) => return reject(Check::Forbidden, e),
            }
        } else if ext.oid.starts_with(csr::ARC_PP_AUTH) {
            return reject(
                Check::Forbidden,
                format!(
                    "authorization extension {} ({}) is never signed",
                    ext.oid,
                    short_name(&ext.oid).unwrap_or("ppAuthCertExt")
                ),
            );
        }
    }
    // 6. extensions
    let mut seen = BTreeSet::new();
    for ext in &csr.extensions {
        if !seen.insert(ext.oid.as_str()) {
            return reject(
                Check::Extensions,
                format!("extension {} is requested twice", ext.oid),
            );
        }
        if ext.oid == csr::OID_SUBJECT_ALT_NAME {
            continue;
        }
        let label = short_name(&ext.oid).map_or_else(|| ext.oid.clone(), str::to_owned);
        let Some(value) = csr::ext_string(&ext.value) else {
            return reject(
                Check::Extensions,
                format!("extension {label} does not hold a string value"),
            );
        };
        let expected: Option<&str> = match ext.oid.as_str() {
            csr::OID_PP_UUID => Some(certname),
            csr::OID_PP_INSTANCE_ID => match pp_instance {
                PpInstance::Expect(id) => Some(id),
                PpInstance::Skip => continue,
                PpInstance::Refuse => {
                    return reject(
                        Check::Extensions,
                        "pp_instance_id requested but the registration has no instance id (policy.instance_id_without_registered is off)",
                    );
                }
            },
            oid => allowed
                .iter()
                .find(|(k, _)| registrable_extension(k).as_deref() == Some(oid))
                .map(|(_, v)| v.as_str()),
        };
        match expected {
            None => {
                return reject(
                    Check::Extensions,
                    format!("extension {label} is not allowed by the {source}"),
                );
            }
            Some(want) if want.as_bytes() != value.as_slice() => {
                return reject(
                    Check::Extensions,
                    format!(
                        "extension {label} value `{}` differs from the {source}'s `{}`",
                        truncate(&String::from_utf8_lossy(&value)),
                        truncate(want)
                    ),
                );
            }
            Some(_) => {}
        }
    }
    Ok(())
}

/// What check 7 found.
#[derive(Debug, Default)]
pub struct Proof {
    /// The proven instance id.
    pub instance_id: Option<String>,
    /// A note for the audit line.
    pub note: Option<String>,
}

/// Check 7: the instance identity proof.
pub fn check_identity(
    csr: &Csr,
    reg: &Registration,
    policy: &Policy,
    trust: &TrustedCerts,
    now: DateTime<Utc>,
) -> Result<Proof, Rejection> {
    let attr = schemas::oids::label(csr::OID_INSTANCE_IDENTITY);
    let blob = match single_proof(csr)? {
        None => {
            return if reg.identity.is_some() {
                reject(
                    Check::Identity,
                    format!(
                        "the registration requires the instance identity proof and the CSR carries none (attribute {attr}); was bootcfg run with `puppet.instance_identity: true` on EC2?"
                    ),
                )
            } else if reg.is_legacy() && !policy.identity.accept_legacy_registrations {
                reject(
                    Check::Identity,
                    "the registration predates instance identity binding (format 1) and the CSR carries no proof; policy.identity.accept_legacy_registrations is off",
                )
            } else if reg.is_legacy() {
                Ok(Proof {
                    instance_id: None,
                    note: Some("legacy registration (format 1) signed without an instance identity proof (policy.identity.accept_legacy_registrations)".into()),
                })
            } else if policy.identity.require_proof {
                reject(
                    Check::Identity,
                    "the registration does not require an instance identity proof (conductor launch.instance_identity: false) and policy.identity.require_proof is on",
                )
            } else {
                Ok(Proof {
                    instance_id: None,
                    note: Some("the registration does not require an instance identity proof (conductor launch.instance_identity: false)".into()),
                })
            };
        }
        Some(one) => one,
    };
    let v = verified_proof(blob, trust, policy)?;
    let d = &v.doc;
    let mismatch = |what: &str, got: &str, want: &str| {
        reject::<Proof>(
            Check::Identity,
            format!(
                "signed identity document {what} `{}` differs from the registered `{}` (instance {}, signer {} serial {})",
                truncate(got),
                truncate(want),
                truncate(&d.instance_id),
                v.signer_region,
                v.signer_serial
            ),
        )
    };
    if let Some(b) = &reg.identity {
        if d.account_id != b.account_id {
            return mismatch("accountId", &d.account_id, &b.account_id);
        }
        if d.region != b.region {
            return mismatch("region", &d.region, &b.region);
        }
        match &reg.image_id {
            Some(img) if *img == d.image_id => {}
            Some(img) => return mismatch("imageId", &d.image_id, img),
            None => {
                return reject(
                    Check::Identity,
                    "the registration requires an identity proof but records no image id; re-register it",
                );
            }
        }
    }
    if let Some(iid) = &reg.instance_id
        && *iid != d.instance_id
    {
        return mismatch("instanceId", &d.instance_id, iid);
    }
    for ext in &csr.extensions {
        if ext.oid == csr::OID_PP_INSTANCE_ID {
            let value = csr::ext_string(&ext.value).unwrap_or_default();
            if value != d.instance_id.as_bytes() {
                return mismatch(
                    "instanceId",
                    &d.instance_id,
                    &format!("{} (pp_instance_id)", String::from_utf8_lossy(&value)),
                );
            }
        }
    }
    check_launch_time(
        d,
        (reg.created_at, reg.expires_at),
        now,
        policy,
        "the registration's",
        "",
    )?;
    Ok(Proof {
        instance_id: Some(d.instance_id.clone()),
        note: reg.instance_id.is_none().then(|| {
            format!(
                "registration had no instance id; bound to {} by its first valid identity document",
                d.instance_id
            )
        }),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::craft::{self, Spec};
    use crate::memreg::MemRegistry;
    use openssl::nid::Nid;
    use openssl::pkey::{PKey, Private};
    use schemas::registration::sha256_hex;
    use std::sync::OnceLock;

    const CN: &str = "0b7d3c59-5b4f-4f8e-9f0e-2d7f1f1f4a11";
    const SECRET: &str = "9f86d081884c7d65";
    const IID: &str = "i-0123456789abcdef0";

    fn key() -> &'static PKey<Private> {
        static K: OnceLock<PKey<Private>> = OnceLock::new();
        K.get_or_init(|| craft::rsa_key(2048))
    }

    fn builtin_trust() -> &'static TrustedCerts {
        static T: OnceLock<TrustedCerts> = OnceLock::new();
        T.get_or_init(TrustedCerts::builtin)
    }

    fn now() -> DateTime<Utc> {
        Utc::now()
    }

    fn registration() -> Registration {
        let mut r = Registration::new(
            CN,
            &sha256_hex(SECRET.as_bytes()),
            "ops@ws",
            now(),
            chrono::Duration::minutes(30),
        );
        r.instance_id = Some(IID.into());
        r.allowed_extensions.insert("pp_role".into(), "web".into());
        r.allowed_extensions
            .insert("1.3.6.1.4.1.34380.1.2.7".into(), "blue".into());
        r
    }

    fn good() -> Spec {
        Spec::new(CN, SECRET)
            .ext(csr::OID_PP_INSTANCE_ID, craft::utf8_ext(IID))
            .ext(csr::OID_PP_UUID, craft::utf8_ext(CN))
            .ext("1.3.6.1.4.1.34380.1.1.13", craft::utf8_ext("web"))
    }

    async fn run_with(
        reg: Option<Registration>,
        certname: &str,
        pem: &[u8],
        mode: Mode,
        policy: &Policy,
    ) -> (MemRegistry, Result<Approval, Rejection>) {
        let mem = MemRegistry::default();
        if let Some(r) = reg {
            mem.create(&r).await.unwrap();
        }
        let d = Decider {
            trust: builtin_trust(),
            registry: &mem,
            policy,
            registry_deadline: Duration::from_secs(1),
            retry_grace: chrono::Duration::zero(),
            membership: None,
            who: "test@host".into(),
        };
        let ev = d.evaluate(certname, pem, mode, now()).await.unwrap();
        let verdict = match ev.verdict {
            Ok(a) => d
                .consume(&a, &ev.csr_sha256, now())
                .await
                .unwrap()
                .map(|_| a),
            Err(r) => Err(r),
        };
        (mem, verdict)
    }

    async fn check(spec: &Spec, expect: Option<Check>) -> MemRegistry {
        let pem = spec.build(key());
        let (mem, v) = run_with(
            Some(registration()),
            CN,
            &pem,
            Mode::Hook,
            &Policy::default(),
        )
        .await;
        match (expect, &v) {
            (None, Ok(_)) => {}
            (Some(c), Err(r)) if r.check == c => {}
            _ => panic!("expected {expect:?}, got {v:?}"),
        }
        mem
    }

    #[tokio::test]
    async fn registered_csr_is_approved_and_consumed() {
        let mem = check(&good(), None).await;
        let c = mem.peek(CN).unwrap().consumed.unwrap();
        assert_eq!(c.by, "test@host");
        assert_eq!(c.csr_sha256, csr::fingerprint(&good().build(key())));
    }

    #[tokio::test]
    async fn puppet_printable_string_with_utf8_is_read() {
        let secret = "sec_ret!@#é";
        let mut reg = registration();
        reg.secret_sha256 = sha256_hex(secret.as_bytes());
        let pem = Spec::new(CN, secret).build(key());
        let (_, v) = run_with(Some(reg.clone()), CN, &pem, Mode::Hook, &Policy::default()).await;
        assert!(v.is_ok(), "{v:?}");
        for tag in [crate::der::UTF8_STRING, crate::der::IA5_STRING] {
            let mut s = Spec::new(CN, "");
            s.challenge = vec![(tag, secret.as_bytes().to_vec())];
            let (_, v) = run_with(
                Some(reg.clone()),
                CN,
                &s.build(key()),
                Mode::Hook,
                &Policy::default(),
            )
            .await;
            assert!(v.is_ok(), "tag {tag}: {v:?}");
        }
    }

    #[tokio::test]
    async fn ec_keys_p256_and_up_pass_and_weaker_keys_fail() {
        for (k, ok) in [
            (craft::ec_key(Nid::X9_62_PRIME256V1), true),
            (craft::ec_key(Nid::SECP384R1), true),
            (craft::ec_key(Nid::SECP224R1), false),
            (craft::rsa_key(1024), false),
        ] {
            let pem = Spec::new(CN, SECRET).build(&k);
            let (_, v) = run_with(
                Some(registration()),
                CN,
                &pem,
                Mode::Hook,
                &Policy::default(),
            )
            .await;
            assert_eq!(v.is_ok(), ok, "{v:?}");
            if !ok {
                assert_eq!(v.unwrap_err().check, Check::Csr);
            }
        }
    }

    #[tokio::test]
    async fn each_adversarial_class_is_refused_by_its_check() {
        let mut s = good();
        s.challenge = vec![(0x13, b"wrong".to_vec())];
        check(&s, Some(Check::Secret)).await;
        s.challenge.clear();
        check(&s, Some(Check::Secret)).await;
        s.challenge = vec![(0x13, SECRET.into()), (0x13, SECRET.into())];
        check(&s, Some(Check::Secret)).await;

        check(
            &good().ext(csr::OID_SUBJECT_ALT_NAME, craft::san_dns(&["puppet"])),
            Some(Check::Forbidden),
        )
        .await;
        check(
            &good().ext(csr::OID_SUBJECT_ALT_NAME, craft::san_dns(&[CN, "puppet"])),
            Some(Check::Forbidden),
        )
        .await;
        check(
            &good().ext(csr::OID_SUBJECT_ALT_NAME, craft::san_dns(&[CN])),
            None,
        )
        .await;
        check(
            &good().ext("1.3.6.1.4.1.34380.1.3.39", craft::utf8_ext("true")),
            Some(Check::Forbidden),
        )
        .await;
        check(
            &good().ext("1.3.6.1.4.1.34380.1.3.13", craft::utf8_ext("admin")),
            Some(Check::Forbidden),
        )
        .await;

        check(
            &good().ext("1.3.6.1.4.1.34380.1.1.12", craft::utf8_ext("production")),
            Some(Check::Extensions),
        )
        .await;
        check(
            &Spec::new(CN, SECRET).ext("1.3.6.1.4.1.34380.1.1.13", craft::utf8_ext("db")),
            Some(Check::Extensions),
        )
        .await;
        check(
            &Spec::new(CN, SECRET).ext("1.3.6.1.4.1.34380.1.2.7", craft::utf8_ext("blue")),
            None,
        )
        .await;
        check(
            &Spec::new(CN, SECRET).ext(
                csr::OID_PP_INSTANCE_ID,
                craft::utf8_ext("i-ffffffffffffffff0"),
            ),
            Some(Check::Extensions),
        )
        .await;
        check(
            &Spec::new(CN, SECRET).ext(csr::OID_PP_UUID, craft::utf8_ext("another")),
            Some(Check::Extensions),
        )
        .await;
        check(
            &Spec::new(CN, SECRET).ext("2.5.29.19", craft::tlv(0x30, &[0x01, 0x01, 0xff])),
            Some(Check::Extensions),
        )
        .await;
        check(
            &Spec::new(CN, SECRET)
                .ext("1.3.6.1.4.1.34380.1.1.13", craft::utf8_ext("web"))
                .ext("1.3.6.1.4.1.34380.1.1.13", craft::utf8_ext("web")),
            Some(Check::Extensions),
        )
        .await;
        check(
            &Spec::new(CN, SECRET).ext(
                "1.3.6.1.4.1.34380.1.1.13",
                vec![0x04, 0x03, b'w', b'e', b'b'],
            ),
            Some(Check::Extensions),
        )
        .await;

        let mut bad_sig = good();
        bad_sig.corrupt_signature = true;
        check(&bad_sig, Some(Check::Csr)).await;
        let mut other_cn = good();
        other_cn.cn = "1b7d3c59-5b4f-4f8e-9f0e-2d7f1f1f4a11".into();
        check(&other_cn, Some(Check::Csr)).await;
    }

    #[tokio::test]
    async fn instance_id_without_registered_one_follows_policy() {
        let mut reg = registration();
        reg.instance_id = None;
        let pem = Spec::new(CN, SECRET)
            .ext(csr::OID_PP_INSTANCE_ID, craft::utf8_ext(IID))
            .build(key());
        let (_, v) = run_with(Some(reg.clone()), CN, &pem, Mode::Hook, &Policy::default()).await;
        assert_eq!(v.unwrap_err().check, Check::Extensions);
        let lax = Policy {
            instance_id_without_registered: true,
            ..Policy::default()
        };
        let (_, v) = run_with(Some(reg), CN, &pem, Mode::Hook, &lax).await;
        assert!(v.is_ok(), "{v:?}");
    }

    #[tokio::test]
    async fn registration_state_is_enforced() {
        let pem = good().build(key());
        let (_, v) = run_with(None, CN, &pem, Mode::Hook, &Policy::default()).await;
        assert_eq!(v.unwrap_err().check, Check::Registration);

        let mut expired = registration();
        expired.expires_at = now() - chrono::Duration::seconds(1);
        let (_, v) = run_with(Some(expired), CN, &pem, Mode::Hook, &Policy::default()).await;
        assert!(v.as_ref().unwrap_err().reason.contains("expired"), "{v:?}");

        // Replay: consumed by another CSR is refused in both modes; by this CSR, the sweep may retry.
        let mut consumed = registration();
        consumed.consumed = Some(Consumption {
            at: now(),
            by: "autosign@ca".into(),
            csr_sha256: "00".repeat(32),
            instance_id: None,
        });
        for mode in [Mode::Hook, Mode::Sweep] {
            let (_, v) = run_with(Some(consumed.clone()), CN, &pem, mode, &Policy::default()).await;
            assert!(v.as_ref().unwrap_err().reason.contains("replay"), "{v:?}");
        }
        consumed.consumed.as_mut().unwrap().csr_sha256 = csr::fingerprint(&pem);
        let (_, v) = run_with(
            Some(consumed.clone()),
            CN,
            &pem,
            Mode::Hook,
            &Policy::default(),
        )
        .await;
        assert_eq!(v.unwrap_err().check, Check::Registration);
        let (_, v) = run_with(
            Some(consumed.clone()),
            CN,
            &pem,
            Mode::Sweep,
            &Policy::default(),
        )
        .await;
        assert!(v.unwrap().retry);
        // Within the grace period the sweep leaves it to the signer that consumed it.
        let mem = MemRegistry::default();
        mem.create(&consumed).await.unwrap();
        let policy = Policy::default();
        let d = Decider {
            trust: builtin_trust(),
            registry: &mem,
            policy: &policy,
            registry_deadline: Duration::from_secs(1),
            who: "s".into(),
            retry_grace: chrono::Duration::seconds(60),
            membership: None,
        };
        let ev = d.evaluate(CN, &pem, Mode::Sweep, now()).await.unwrap();
        assert!(ev.verdict.unwrap_err().reason.contains("before a retry"));
    }

    #[tokio::test]
    async fn garbage_and_oversized_input_is_refused_before_parsing() {
        for input in [
            b"hello".to_vec(),
            b"-----BEGIN CERTIFICATE REQUEST-----\nAAAA\n-----END CERTIFICATE REQUEST-----\n"
                .to_vec(),
            vec![b'A'; 1 << 20],
        ] {
            let (_, v) = run_with(
                Some(registration()),
                CN,
                &input,
                Mode::Hook,
                &Policy::default(),
            )
            .await;
            let r = v.unwrap_err();
            assert_eq!(r.check, Check::Input, "{r:?}");
        }
        let (_, v) = run_with(
            Some(registration()),
            "../etc/passwd",
            &good().build(key()),
            Mode::Hook,
            &Policy::default(),
        )
        .await;
        assert_eq!(v.unwrap_err().check, Check::Input);
    }

    /// A decider on `mem` with `policy`: no retry grace, no Auto Scaling.
    fn decider<'a>(mem: &'a MemRegistry, policy: &'a Policy) -> Decider<'a> {
        Decider {
            trust: builtin_trust(),
            registry: mem,
            policy,
            registry_deadline: Duration::from_secs(1),
            retry_grace: chrono::Duration::zero(),
            membership: None,
            who: "a".into(),
        }
    }

    #[tokio::test]
    async fn a_lost_compare_and_swap_is_a_rejection_and_registry_failure_an_error() {
        let mem = MemRegistry::default();
        mem.create(&registration()).await.unwrap();
        let policy = Policy::default();
        let d = decider(&mem, &policy);
        let pem = good().build(key());
        let a = d.evaluate(CN, &pem, Mode::Sweep, now()).await.unwrap();
        let b = d.evaluate(CN, &pem, Mode::Sweep, now()).await.unwrap();
        let (a_ok, b_ok) = (a.verdict.unwrap(), b.verdict.unwrap());
        assert!(
            d.consume(&a_ok, &a.csr_sha256, now())
                .await
                .unwrap()
                .is_ok()
        );
        assert_eq!(
            d.consume(&b_ok, &b.csr_sha256, now())
                .await
                .unwrap()
                .unwrap_err()
                .check,
            Check::Consume
        );

        mem.down.store(true, std::sync::atomic::Ordering::SeqCst);
        assert!(d.evaluate(CN, &pem, Mode::Hook, now()).await.is_err());
    }

    /// `conductor reap` retired the certname: refused at evaluation, and refused at the last
    /// check when the retirement lands between the decision and the signing (the consumption is
    /// spent, nothing is signed). A registry that cannot say is an error: fail closed.
    #[tokio::test]
    async fn a_retired_certname_is_refused_before_and_after_consuming() {
        use schemas::retirement::Retirement;
        let mem = MemRegistry::default();
        mem.create(&registration()).await.unwrap();
        let policy = Policy::default();
        let d = decider(&mem, &policy);
        let pem = good().build(key());
        let ev = d.evaluate(CN, &pem, Mode::Hook, now()).await.unwrap();
        let approval = ev.verdict.unwrap();
        let retirement = Retirement::new(
            CN,
            IID,
            None,
            &format!("EC2 reports {IID} terminated"),
            "ops@ws",
            now(),
        );
        assert!(mem.retire(&retirement).await.unwrap());
        let r = d
            .consume(&approval, &ev.csr_sha256, now())
            .await
            .unwrap()
            .unwrap_err();
        assert_eq!(r.check, Check::Retired, "{r:?}");
        assert!(r.reason.contains("never signed again"), "{r:?}");
        for mode in [Mode::Hook, Mode::Sweep] {
            let ev = d.evaluate(CN, &pem, mode, now()).await.unwrap();
            assert_eq!(ev.verdict.unwrap_err().check, Check::Retired);
        }
        assert!(
            !mem.retire(&retirement).await.unwrap(),
            "retired once, never twice"
        );
        mem.down.store(true, std::sync::atomic::Ordering::SeqCst);
        assert!(d.evaluate(CN, &pem, Mode::Hook, now()).await.is_err());
    }

    #[test]
    fn debug_never_shows_the_secret() {
        let c = csr::parse(&good().build(key()), &Policy::default()).unwrap();
        assert!(!format!("{c:?}").contains(SECRET));
        assert_eq!(c.challenge_password(), Some(SECRET.as_bytes()));
    }

    mod identity {
        //! Check 7 against documents signed by a harness-made "AWS" key (testkit::iid).
        use super::*;
        use testkit::iid::{Doc, MOTO_ACCOUNT, TestAws, tamper};

        const AMI: &str = "ami-0123456789abcdef0";
        const REGION: &str = "eu-west-1";
        const OTHER_IID: &str = "i-0fedcba9876543210";

        struct World {
            aws: TestAws,
            trust: TrustedCerts,
            policy: Policy,
        }

        fn world() -> &'static World {
            static W: OnceLock<World> = OnceLock::new();
            W.get_or_init(|| {
                let aws = TestAws::generate(REGION);
                let trust = TrustedCerts::parse("test bundle", &aws.bundle_pem()).unwrap();
                let mut policy = Policy::default();
                policy.identity.accounts = vec![MOTO_ACCOUNT.into()];
                World { aws, trust, policy }
            })
        }

        fn bound() -> Registration {
            let mut r = registration();
            r.image_id = Some(AMI.into());
            r.identity = Some(schemas::registration::IdentityBinding {
                account_id: MOTO_ACCOUNT.into(),
                region: REGION.into(),
            });
            r
        }

        fn doc(iid: &str) -> Doc {
            Doc::new(iid, AMI, REGION)
        }

        fn proof(rsa2048: &str) -> (String, Vec<u8>) {
            let compact: String = rsa2048.split_whitespace().collect();
            (
                csr::OID_INSTANCE_IDENTITY.into(),
                craft::tlv(crate::der::PRINTABLE_STRING, compact.as_bytes()),
            )
        }

        fn with_proofs(spec: Spec, proofs: &[String]) -> Vec<u8> {
            let mut s = spec;
            for p in proofs {
                s.attributes.push(proof(p));
            }
            s.build(key())
        }

        fn signed(d: &Doc) -> String {
            world().aws.sign(&d.render())
        }

        async fn decide_on(
            mem: &MemRegistry,
            certname: &str,
            pem: &[u8],
            policy: &Policy,
        ) -> Result<Approval, Rejection> {
            let d = Decider {
                trust: &world().trust,
                registry: mem,
                policy,
                registry_deadline: Duration::from_secs(1),
                retry_grace: chrono::Duration::zero(),
                membership: None,
                who: "test@host".into(),
            };
            let ev = d.evaluate(certname, pem, Mode::Hook, now()).await.unwrap();
            match ev.verdict {
                Ok(a) => d
                    .consume(&a, &ev.csr_sha256, now())
                    .await
                    .unwrap()
                    .map(|_| a),
                Err(r) => Err(r),
            }
        }

        async fn run(reg: Registration, pem: &[u8]) -> (MemRegistry, Result<Approval, Rejection>) {
            let mem = MemRegistry::default();
            mem.create(&reg).await.unwrap();
            let v = decide_on(&mem, &reg.certname, pem, &world().policy).await;
            (mem, v)
        }

        async fn refused(reg: Registration, pem: &[u8], why: &str) {
            let (mem, v) = run(reg, pem).await;
            let r = v.expect_err("must be refused");
            assert_eq!(r.check, Check::Identity, "{r:?}");
            assert!(r.reason.contains(why), "{why:?} not in {:?}", r.reason);
            assert!(mem.peek(CN).unwrap().consumed.is_none(), "nothing consumed");
            assert!(mem.claims.lock().unwrap().is_empty(), "nothing claimed");
        }

        #[tokio::test]
        async fn a_valid_proof_is_approved_and_the_instance_is_recorded_and_claimed() {
            let pem = with_proofs(good(), &[signed(&doc(IID))]);
            let (mem, v) = run(bound(), &pem).await;
            let a = v.unwrap();
            assert_eq!(a.instance_id.as_deref(), Some(IID));
            let c = mem.peek(CN).unwrap().consumed.unwrap();
            assert_eq!(c.instance_id.as_deref(), Some(IID));
            assert_eq!(
                mem.claims.lock().unwrap().get(IID).map(String::as_str),
                Some(CN)
            );
        }

        #[tokio::test]
        async fn the_issue_list_of_bad_proofs_is_refused() {
            // no proof where the registration requires one
            refused(bound(), &good().build(key()), "carries none").await;
            // a valid document of another instance in the same account
            refused(
                bound(),
                &with_proofs(good(), &[signed(&doc(OTHER_IID))]),
                "instanceId",
            )
            .await;
            // a document signed by another key (same subject and serial as the pinned cert)
            let forged = world().aws.impostor().sign(&doc(IID).render());
            refused(bound(), &with_proofs(good(), &[forged]), "does not verify").await;
            // a document edited after signing
            let edited = tamper(&signed(&doc(OTHER_IID)), OTHER_IID, IID);
            refused(bound(), &with_proofs(good(), &[edited]), "does not verify").await;
            // pendingTime before the registration existed, and after it expired
            let reg = bound();
            let mut early = doc(IID);
            early.pending_time = reg.created_at - chrono::Duration::minutes(10);
            refused(
                reg.clone(),
                &with_proofs(good(), &[signed(&early)]),
                "pendingTime",
            )
            .await;
            let mut late = doc(IID);
            late.pending_time = reg.expires_at + chrono::Duration::minutes(10);
            refused(reg, &with_proofs(good(), &[signed(&late)]), "pendingTime").await;
        }

        #[tokio::test]
        async fn the_neighbours_are_refused_too() {
            // account not on the allow-list
            let mut d = doc(IID);
            d.account_id = "210987654321".into();
            refused(
                bound(),
                &with_proofs(good(), &[signed(&d)]),
                "policy.identity.accounts",
            )
            .await;
            // another image, another region (signed by a certificate filed under that region)
            let mut d = doc(IID);
            d.image_id = "ami-0aaaaaaaaaaaaaaaa".into();
            refused(bound(), &with_proofs(good(), &[signed(&d)]), "imageId").await;
            let mut d = doc(IID);
            d.region = "us-east-1".into();
            refused(
                bound(),
                &with_proofs(good(), &[signed(&d)]),
                "signed with the eu-west-1",
            )
            .await;
            // two proofs, even two valid ones
            let p = signed(&doc(IID));
            refused(
                bound(),
                &with_proofs(good(), &[p.clone(), p]),
                "exactly one",
            )
            .await;
            // pp_instance_id naming another instance than the proof, on a registration without one
            let mut unbound = bound();
            unbound.instance_id = None;
            let spec =
                Spec::new(CN, SECRET).ext(csr::OID_PP_INSTANCE_ID, craft::utf8_ext(OTHER_IID));
            refused(
                unbound,
                &with_proofs(spec, &[signed(&doc(IID))]),
                "pp_instance_id",
            )
            .await;
            // a launch in the future (beyond the skew)
            let mut d = doc(IID);
            d.pending_time = now() + chrono::Duration::minutes(10);
            refused(bound(), &with_proofs(good(), &[signed(&d)]), "pendingTime").await;
            // garbage in the attribute
            refused(
                bound(),
                &with_proofs(good(), &["bm90IGEgcGtjczc=".into()]),
                "PKCS#7",
            )
            .await;
            // the registration binds but records no image
            let mut no_image = bound();
            no_image.image_id = None;
            refused(
                no_image,
                &with_proofs(good(), &[signed(&doc(IID))]),
                "no image id",
            )
            .await;
        }

        #[tokio::test]
        async fn a_registration_without_instance_id_binds_to_the_first_document_only() {
            let mem = MemRegistry::default();
            let mut first = bound();
            first.instance_id = None;
            mem.create(&first).await.unwrap();
            let proof = signed(&doc(IID));
            let a = decide_on(
                &mem,
                CN,
                &with_proofs(Spec::new(CN, SECRET), std::slice::from_ref(&proof)),
                &world().policy,
            )
            .await
            .unwrap();
            assert!(a.note.unwrap().contains("bound to"));
            // The same (now public) document under a second unbound registration: refused.
            let cn2 = "2b7d3c59-5b4f-4f8e-9f0e-2d7f1f1f4a11";
            let mut second = first.clone();
            second.certname = cn2.into();
            mem.create(&second).await.unwrap();
            let pem2 = with_proofs(Spec::new(cn2, SECRET), &[proof]);
            let r = decide_on(&mem, cn2, &pem2, &world().policy)
                .await
                .unwrap_err();
            assert_eq!(r.check, Check::Identity);
            assert!(r.reason.contains("already enrolled"), "{r:?}");
            assert!(mem.peek(cn2).unwrap().consumed.is_none());
        }

        #[tokio::test]
        async fn legacy_registrations_need_the_switch_and_say_so() {
            let mut legacy = registration();
            legacy.version = schemas::registration::LEGACY_VERSION;
            let (_, v) = run(legacy.clone(), &good().build(key())).await;
            let r = v.unwrap_err();
            assert_eq!(r.check, Check::Identity);
            assert!(r.reason.contains("accept_legacy_registrations"), "{r:?}");
            let mut lax = world().policy.clone();
            lax.identity.accept_legacy_registrations = true;
            let mem = MemRegistry::default();
            mem.create(&legacy).await.unwrap();
            let a = decide_on(&mem, CN, &good().build(key()), &lax)
                .await
                .unwrap();
            assert!(a.note.unwrap().contains("legacy"));
            // A registration that opted out (format 2, no binding) is signed without proof, noted,
            // unless the signer requires the proof of every registration.
            let (_, v) = run(registration(), &good().build(key())).await;
            assert!(v.unwrap().note.unwrap().contains("does not require"));
            let mut strict = world().policy.clone();
            strict.identity.require_proof = true;
            let mem = MemRegistry::default();
            mem.create(&registration()).await.unwrap();
            let r = decide_on(&mem, CN, &good().build(key()), &strict)
                .await
                .unwrap_err();
            assert!(r.reason.contains("require_proof"), "{r:?}");
        }

        #[tokio::test]
        async fn the_builtin_bundle_does_not_trust_the_harness_key() {
            let mem = MemRegistry::default();
            mem.create(&bound()).await.unwrap();
            let d = Decider {
                trust: builtin_trust(),
                registry: &mem,
                policy: &world().policy,
                registry_deadline: Duration::from_secs(1),
                retry_grace: chrono::Duration::zero(),
                membership: None,
                who: "t".into(),
            };
            let pem = with_proofs(good(), &[signed(&doc(IID))]);
            let ev = d.evaluate(CN, &pem, Mode::Hook, now()).await.unwrap();
            assert_eq!(ev.verdict.unwrap_err().check, Check::Identity);
        }
    }
}
