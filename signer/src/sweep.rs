//! `signer sweep`: decide every pending CSR the CA holds, and sign the approved ones.
//!
//! Per CSR: fetch it (checking it against the listed fingerprint), evaluate, consume the
//! registration (compare-and-swap), fetch it **again** and compare its SHA-256 with the one that
//! was decided, then `PUT certificate_status/<name>` `{"desired_state":"signed"}`, then fetch the
//! issued certificate and compare its public key with the checked CSR's: the CA has no
//! compare-and-sign, so a request replaced between the re-check and the signing is caught here
//! and its certificate revoked at once (an incident).
//!
//! Each listed entry is decided on its own: one that cannot be addressed (a certname that is not a
//! plain name) or read is skipped and reported, and the sweep goes on; only the registry or the
//! CA being unreachable stops a run.
//!
//! The retry rule (a registration consumed by this very CSR, see [`crate::decide`]) applies only
//! when the CA's records show that no certificate was ever issued under the name
//! ([`Ca::issued`]): a node whose certificate was cleaned is never signed again.
//!
//! An exclusive lock on `lock_file` keeps overlapping runs on one host apart; the CAS keeps
//! signers on different hosts (or the hook and a sweep) apart.

use crate::audit::{AuditLog, Outcome, Record};
use crate::ca::{Ca, Issuance, SignOutcome};
use crate::decide::{Check, DecideError, Decider, Mode};
use crate::hook::exit;
use anyhow::{Context, Result};
use schemas::registry::{Registry, RegistryOptions};
use schemas::signer_config::SignerConfig;
use serde::Serialize;
use std::fs::File;

/// One CSR's result in a sweep.
#[derive(Debug, Clone, Serialize)]
pub struct Item {
    pub certname: String,
    pub csr_sha256: String,
    pub decision: Outcome,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub check: Option<Check>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// What one sweep did; printed as JSON with `--output json`.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Report {
    pub pending: usize,
    pub signed: usize,
    pub rejected: usize,
    pub would_sign: usize,
    pub errors: usize,
    /// Rejected requests removed from the CA because they squatted on a pending registration.
    pub evicted: usize,
    /// Listed entries that could not be decided on their own terms (e.g. a certname that is not a
    /// plain name); each is an item with `decision: skipped` and the reason.
    pub skipped: usize,
    /// Certificates issued for something other than the checked CSR, revoked at once.
    pub incidents: usize,
    /// Retired certnames (their instances terminated, see `conductor reap`) whose certificate
    /// or request this run revoked and removed from the CA.
    pub revoked: usize,
    /// `--dry-run`: retired certnames the CA still holds something for.
    pub would_revoke: usize,
    /// Set when the run stopped early (registry or CA unreachable), or was skipped (lock held).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    pub skipped_locked: bool,
    pub items: Vec<Item>,
}

impl Report {
    fn push(&mut self, audit: &AuditLog, item: Item) {
        match item.decision {
            Outcome::Signed | Outcome::Approved => self.signed += 1,
            Outcome::Rejected => self.rejected += 1,
            Outcome::WouldSign => self.would_sign += 1,
            Outcome::Error => self.errors += 1,
            Outcome::Evicted => self.evicted += 1,
            Outcome::Skipped => self.skipped += 1,
            Outcome::Incident => self.incidents += 1,
            Outcome::Revoked => self.revoked += 1,
            Outcome::WouldRevoke => self.would_revoke += 1,
        }
        let rec = Record::new(
            Mode::Sweep,
            &item.certname,
            &item.csr_sha256,
            item.decision,
            item.check,
            item.reason.clone(),
        );
        if audit.has_rejection(&rec) {
            tracing::debug!(certname = %item.certname, "same rejection already in the audit log; not repeated");
        } else if let Err(e) = audit.write(&rec) {
            tracing::error!("cannot write the audit log {}: {e}", audit.path().display());
            self.errors += 1;
        }
        match item.decision {
            Outcome::Rejected => {
                tracing::info!(certname = %item.certname, check = ?item.check, reason = item.reason.as_deref().unwrap_or(""), "left pending")
            }
            Outcome::Error => {
                tracing::error!(certname = %item.certname, reason = item.reason.as_deref().unwrap_or(""), "not signed")
            }
            Outcome::Skipped => {
                tracing::warn!(certname = %item.certname, reason = item.reason.as_deref().unwrap_or(""), "skipped")
            }
            Outcome::Incident => {
                tracing::error!(certname = %item.certname, csr_sha256 = %item.csr_sha256, reason = item.reason.as_deref().unwrap_or(""), "SECURITY INCIDENT")
            }
            _ => tracing::info!(certname = %item.certname, decision = ?item.decision, "decided"),
        }
        self.items.push(item);
    }

    /// Whether the run must give a non-zero exit.
    pub fn failed(&self) -> bool {
        self.exit_code() != exit::OK
    }

    /// The sweep's exit code: [`exit::INCIDENT`] over [`exit::UNAVAILABLE`] (an error, or the
    /// registry or CA unreachable) over [`exit::SKIPPED`] over [`exit::OK`].
    pub fn exit_code(&self) -> u8 {
        if self.incidents > 0 {
            exit::INCIDENT
        } else if self.error.is_some() || self.errors > 0 {
            exit::UNAVAILABLE
        } else if self.skipped > 0 {
            exit::SKIPPED
        } else {
            exit::OK
        }
    }
}

/// Take the sweep lock without waiting. `Ok(None)` means another sweep holds it.
pub fn try_lock(cfg: &SignerConfig) -> Result<Option<File>> {
    if let Some(dir) = cfg.lock_file.parent()
        && !dir.as_os_str().is_empty()
    {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    let f = File::options()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&cfg.lock_file)
        .with_context(|| format!("opening the lock file {}", cfg.lock_file.display()))?;
    match f.try_lock() {
        Ok(()) => Ok(Some(f)),
        Err(std::fs::TryLockError::WouldBlock) => Ok(None),
        Err(std::fs::TryLockError::Error(e)) => {
            Err(e).with_context(|| format!("locking {}", cfg.lock_file.display()))
        }
    }
}

/// Open the registry and CA from the config and sweep once (under the lock).
pub async fn sweep_once(cfg: &SignerConfig, ca: &dyn Ca, dry_run: bool) -> Report {
    let Ok(lock) = try_lock(cfg) else {
        return Report {
            error: Some(format!("cannot take the lock {}", cfg.lock_file.display())),
            ..Report::default()
        };
    };
    let Some(_lock) = lock else {
        tracing::info!(
            "another sweep holds {}; skipping this run",
            cfg.lock_file.display()
        );
        return Report {
            skipped_locked: true,
            ..Report::default()
        };
    };
    let opts = RegistryOptions {
        region: cfg.region.clone(),
        profile: cfg.profile.clone(),
        endpoint_url: None,
    };
    let registry = match schemas::registry::open(&cfg.registry, &opts).await {
        Ok(r) => r,
        Err(e) => {
            return Report {
                error: Some(e.to_string()),
                ..Report::default()
            };
        }
    };
    sweep_with(cfg, registry.as_ref(), ca, dry_run).await
}

/// Checks that run only once the certname's registration was found pending: a request refused by
/// one of them occupies a name whose instance has yet to enroll, and the CA accepts no second
/// request for a name while one is pending (`allow_duplicate_certs = false`).
fn squats(check: Check) -> bool {
    matches!(
        check,
        Check::Secret | Check::Forbidden | Check::Extensions | Check::Identity
    )
}

/// Remove a rejected request that squats on a pending registration, if it is still the very
/// request that was refused (same fingerprint). Nothing is ever signed here; a failure is
/// reported and the sweep goes on.
async fn evict_squatter(
    report: &mut Report,
    audit: &AuditLog,
    ca: &dyn Ca,
    name: &str,
    sha: &str,
    check: Check,
) {
    if !squats(check) {
        return;
    }
    let item = |decision, reason: String| Item {
        certname: name.to_owned(),
        csr_sha256: sha.to_owned(),
        decision,
        check: Some(check),
        reason: Some(reason),
    };
    let same = match ca.csr(name).await {
        Ok(Some(pem)) => crate::csr::fingerprint(&pem) == sha,
        Ok(None) => return,
        Err(e) => {
            report.push(
                audit,
                item(
                    Outcome::Error,
                    format!("re-fetching the rejected request to evict it: {e:#}"),
                ),
            );
            return;
        }
    };
    if !same {
        return; // replaced meanwhile: the next run decides the new one
    }
    match ca.remove_request(name).await {
        Ok(true) => report.push(
            audit,
            item(
                Outcome::Evicted,
                format!("request refused by the `{}` check removed from the CA so the registered instance can submit its own", check.name()),
            ),
        ),
        Ok(false) => {}
        Err(e) => report.push(audit, item(Outcome::Error, format!("removing the rejected request: {e:#}"))),
    }
}

/// The audit reason of an approval: the retry rule and/or the identity note.
fn approval_note(a: &crate::decide::Approval) -> Option<String> {
    let retry = a
        .retry
        .then(|| "retry for the CSR this registration was consumed by".to_owned());
    match (retry, a.note.clone()) {
        (Some(r), Some(n)) => Some(format!("{r}; {n}")),
        (r, n) => r.or(n),
    }
}

/// Whether the retry rule may apply to `name`: only when the CA's records establish that no
/// certificate was ever issued under it. `Err(item)` is what to report instead (fail closed).
async fn retry_allowed(
    ca: &dyn Ca,
    name: &str,
    sha: &str,
    approval: &crate::decide::Approval,
) -> Result<(), Item> {
    let c = match &approval.basis {
        crate::decide::Basis::Registration { registration, .. } => registration.consumed.as_ref(),
        crate::decide::Basis::Group(_) => None,
    };
    let consumed = c.map_or_else(String::new, |c| {
        format!(" at {} by {}", c.at.to_rfc3339(), c.by)
    });
    let item = |decision, check, reason| Item {
        certname: name.to_owned(),
        csr_sha256: sha.to_owned(),
        decision,
        check,
        reason: Some(reason),
    };
    match ca.issued(name).await {
        Ok(Issuance::Never) => Ok(()),
        Ok(Issuance::Issued(evidence)) => Err(item(
            Outcome::Rejected,
            Some(Check::Registration),
            format!(
                "registration consumed by this CSR{consumed}, and a certificate was issued for it ({evidence}): the retry rule covers only a consumption that issued nothing; a node whose certificate was cleaned (decommissioned) is never signed again; register it anew to re-enroll"
            ),
        )),
        Err(e) => Err(item(
            Outcome::Error,
            None,
            format!(
                "registration consumed by this CSR{consumed}; cannot establish that no certificate was ever issued for it, so it is not signed again: {e:#}"
            ),
        )),
    }
}

/// The public key (DER SubjectPublicKeyInfo) of a PEM CSR or certificate.
fn csr_key(pem: &[u8]) -> Result<Vec<u8>, String> {
    openssl::x509::X509Req::from_pem(pem)
        .and_then(|r| r.public_key())
        .and_then(|k| k.public_key_to_der())
        .map_err(|e| format!("the checked CSR's key cannot be read: {e}"))
}

/// After the CA answered "signed": read the certificate it issued and check that it is for the
/// CSR that was checked (same public key, subject `CN=<name>`). `Err` says why not.
async fn verify_issued(ca: &dyn Ca, name: &str, checked_pem: &[u8]) -> Result<(), String> {
    let want = csr_key(checked_pem)?;
    let pem = match ca.certificate(name).await {
        Ok(Some(p)) => p,
        Ok(None) => {
            return Err("the CA shows no certificate under the name right after signing".into());
        }
        Err(e) => return Err(format!("the issued certificate cannot be read: {e:#}")),
    };
    let cert = openssl::x509::X509::from_pem(&pem)
        .map_err(|e| format!("the CA sent no PEM certificate: {e}"))?;
    let serial = cert
        .serial_number()
        .to_bn()
        .and_then(|b| b.to_hex_str().map(|h| h.to_string()))
        .unwrap_or_else(|_| "?".into());
    let got = cert
        .public_key()
        .and_then(|k| k.public_key_to_der())
        .map_err(|e| format!("the key of certificate serial {serial} cannot be read: {e}"))?;
    if got != want {
        return Err(format!(
            "the CA issued certificate serial 0x{serial} for another key (SHA-256 {}) than the checked CSR's (SHA-256 {}): the pending request was replaced between the check and the signing",
            hex::encode(openssl::sha::sha256(&got)),
            hex::encode(openssl::sha::sha256(&want))
        ));
    }
    let cns: Vec<String> = cert
        .subject_name()
        .entries_by_nid(openssl::nid::Nid::COMMONNAME)
        .map(|e| String::from_utf8_lossy(e.data().as_slice()).into_owned())
        .collect();
    if cns != [name] {
        return Err(format!(
            "certificate serial 0x{serial} has subject CN {cns:?}, not `{name}`"
        ));
    }
    Ok(())
}

/// A certificate that is not shown to be for the checked CSR: revoke it at once and report an
/// incident (audit line, error log, exit [`exit::INCIDENT`]).
async fn incident(
    report: &mut Report,
    audit: &AuditLog,
    ca: &dyn Ca,
    name: &str,
    sha: &str,
    why: String,
) {
    let revoked = match ca.revoke(name).await {
        Ok(true) => "the certificate was revoked".to_owned(),
        Ok(false) => "the CA held no certificate to revoke any more".to_owned(),
        Err(e) => format!(
            "REVOKING IT FAILED ({e:#}): revoke it by hand now (`puppetserver ca revoke --certname {name}`)"
        ),
    };
    report.push(
        audit,
        Item {
            certname: name.to_owned(),
            csr_sha256: sha.to_owned(),
            decision: Outcome::Incident,
            check: Some(Check::Ca),
            reason: Some(format!(
                "not the checked CSR {sha}: {why}; {revoked} (fail closed)"
            )),
        },
    );
}

/// One sweep against a given registry and CA (no lock).
pub async fn sweep_with(
    cfg: &SignerConfig,
    registry: &dyn Registry,
    ca: &dyn Ca,
    dry_run: bool,
) -> Report {
    let audit = AuditLog::new(&cfg.audit_log);
    let trust =
        match crate::identity::TrustedCerts::load(cfg.policy.identity.certificates.as_deref()) {
            Ok(t) => t,
            Err(e) => {
                return Report {
                    error: Some(format!("policy.identity.certificates: {e}")),
                    ..Report::default()
                };
            }
        };
    let asg = if cfg.policy.groups.asg_membership {
        let opts = schemas::registry::RegistryOptions {
            region: cfg.region.clone(),
            profile: cfg.profile.clone(),
            endpoint_url: None,
        };
        Some(crate::asg::AutoScaling::new(&opts).await)
    } else {
        None
    };
    let decider = Decider {
        membership: asg.as_ref().map(|a| a as &dyn crate::asg::Membership),
        trust: &trust,
        registry,
        policy: &cfg.policy,
        registry_deadline: cfg.deadlines.registry,
        who: format!("sweep@{}", crate::ca::hostname()),
        retry_grace: chrono::Duration::from_std(cfg.deadlines.hook * 2)
            .unwrap_or_else(|_| chrono::Duration::seconds(10))
            .max(chrono::Duration::seconds(10)),
    };
    let mut report = Report::default();
    // Retired certnames first: their requests are removed before the listing below.
    if let Err(e) = clean_retired(&mut report, &audit, registry, ca, &decider.who, dry_run).await {
        report.error = Some(e);
        return report;
    }
    let pending = match ca.pending().await {
        Ok(p) => p,
        Err(e) => {
            report.error = Some(format!("listing pending CSRs: {e:#}"));
            return report;
        }
    };
    report.pending = pending.len();
    for p in pending {
        // An entry that cannot be addressed safely is reported and left alone; the rest goes on.
        if let Some(why) = p
            .problem
            .clone()
            .or_else(|| crate::ca::check_plain_name(&p.name).err())
        {
            report.push(
                &audit,
                Item {
                    certname: crate::ca::shown_name(&p.name),
                    csr_sha256: p.sha256.clone().unwrap_or_default(),
                    decision: Outcome::Skipped,
                    check: Some(Check::Ca),
                    reason: Some(format!(
                        "{why}; never fetched, signed or removed by the signer: inspect it and remove it from the CA by hand"
                    )),
                },
            );
            continue;
        }
        let item = |sha: &str, decision, check, reason: Option<String>| Item {
            certname: p.name.clone(),
            csr_sha256: sha.to_owned(),
            decision,
            check,
            reason,
        };
        let pem = match ca.csr(&p.name).await {
            Ok(Some(pem)) => pem,
            Ok(None) => continue, // signed or deleted since the listing
            Err(e) if e.downcast_ref::<crate::ca::EntryError>().is_some() => {
                report.push(
                    &audit,
                    item(
                        p.sha256.as_deref().unwrap_or(""),
                        Outcome::Skipped,
                        Some(Check::Ca),
                        Some(format!("the request cannot be read: {e:#}")),
                    ),
                );
                continue;
            }
            Err(e) => {
                report.error = Some(format!("fetching the CSR of {}: {e:#}", p.name));
                return report;
            }
        };
        let now = chrono::Utc::now();
        let ev = match decider.evaluate(&p.name, &pem, Mode::Sweep, now).await {
            Ok(ev) => ev,
            Err(e) => {
                let msg = registry_message(&e);
                report.push(
                    &audit,
                    item(
                        &crate::csr::fingerprint(&pem),
                        Outcome::Error,
                        None,
                        Some(msg.clone()),
                    ),
                );
                report.error = Some(msg);
                return report;
            }
        };
        if let Some(listed) = &p.sha256
            && *listed != ev.csr_sha256
        {
            report.push(
                &audit,
                item(
                    &ev.csr_sha256,
                    Outcome::Rejected,
                    Some(Check::Ca),
                    Some(format!("CSR changed while it was read (listed {listed})")),
                ),
            );
            continue;
        }
        let approval = match ev.verdict {
            Ok(a) => a,
            Err(r) => {
                let check = r.check;
                report.push(
                    &audit,
                    item(
                        &ev.csr_sha256,
                        Outcome::Rejected,
                        Some(r.check),
                        Some(r.reason),
                    ),
                );
                if cfg.policy.evict_squatting_requests && !dry_run {
                    evict_squatter(&mut report, &audit, ca, &p.name, &ev.csr_sha256, check).await;
                }
                continue;
            }
        };
        if approval.retry
            && let Err(refusal) = retry_allowed(ca, &p.name, &ev.csr_sha256, &approval).await
        {
            report.push(&audit, refusal);
            continue;
        }
        if dry_run {
            report.push(
                &audit,
                item(
                    &ev.csr_sha256,
                    Outcome::WouldSign,
                    None,
                    approval_note(&approval),
                ),
            );
            continue;
        }
        match decider.consume(&approval, &ev.csr_sha256, now).await {
            Ok(Ok(_)) => {}
            Ok(Err(r)) => {
                let check = r.check;
                report.push(
                    &audit,
                    item(
                        &ev.csr_sha256,
                        Outcome::Rejected,
                        Some(r.check),
                        Some(r.reason),
                    ),
                );
                if cfg.policy.evict_squatting_requests {
                    evict_squatter(&mut report, &audit, ca, &p.name, &ev.csr_sha256, check).await;
                }
                continue;
            }
            Err(e) => {
                let msg = registry_message(&e);
                report.push(
                    &audit,
                    item(&ev.csr_sha256, Outcome::Error, None, Some(msg.clone())),
                );
                report.error = Some(msg);
                return report;
            }
        }
        // Re-check the fingerprint immediately before signing: the CA approves a name, not a CSR.
        let again = match ca.csr(&p.name).await {
            Ok(Some(pem)) => crate::csr::fingerprint(&pem),
            Ok(None) => {
                report.push(&audit, item(&ev.csr_sha256, Outcome::Rejected, Some(Check::Ca), Some("CSR disappeared after the registration was consumed (signed or deleted meanwhile)".into())));
                continue;
            }
            Err(e) => {
                let msg = format!(
                    "re-fetching the CSR of {} before signing: {e:#}; the registration is consumed for this CSR and the next run retries",
                    p.name
                );
                report.push(
                    &audit,
                    item(&ev.csr_sha256, Outcome::Error, None, Some(msg.clone())),
                );
                report.error = Some(msg);
                return report;
            }
        };
        if again != ev.csr_sha256 {
            report.push(
                &audit,
                item(
                    &ev.csr_sha256,
                    Outcome::Rejected,
                    Some(Check::Ca),
                    Some(format!(
                        "CSR was replaced before signing (now {again}); not signing"
                    )),
                ),
            );
            continue;
        }
        match ca.sign(&p.name).await {
            // What was checked is what must have been signed: the CA signs whatever request the
            // name has at that moment.
            Ok(SignOutcome::Signed) => match verify_issued(ca, &p.name, &pem).await {
                Ok(()) => report.push(
                    &audit,
                    item(
                        &ev.csr_sha256,
                        Outcome::Signed,
                        None,
                        approval_note(&approval),
                    ),
                ),
                Err(why) => incident(&mut report, &audit, ca, &p.name, &ev.csr_sha256, why).await,
            },
            Ok(SignOutcome::Gone) => report.push(
                &audit,
                item(
                    &ev.csr_sha256,
                    Outcome::Rejected,
                    Some(Check::Ca),
                    Some("CA has no pending CSR under this name any more".into()),
                ),
            ),
            Ok(SignOutcome::Refused(why)) => report.push(
                &audit,
                item(
                    &ev.csr_sha256,
                    Outcome::Rejected,
                    Some(Check::Ca),
                    Some(format!("CA refused to sign: {why}")),
                ),
            ),
            Err(e) => {
                let msg = format!(
                    "signing {}: {e:#}; the registration is consumed for this CSR and the next run retries",
                    p.name
                );
                report.push(
                    &audit,
                    item(&ev.csr_sha256, Outcome::Error, None, Some(msg.clone())),
                );
                report.error = Some(msg);
                return report;
            }
        }
    }
    report
}

/// Revoke and remove what the CA holds under every retired certname that has not settled
/// (see [`schemas::retirement`]), recording each cleaning in the registry. `Err` (the registry or
/// the CA unreachable) stops the run; a record changed meanwhile is left for the next run.
async fn clean_retired(
    report: &mut Report,
    audit: &AuditLog,
    registry: &dyn Registry,
    ca: &dyn Ca,
    who: &str,
    dry_run: bool,
) -> Result<(), String> {
    let names = registry
        .list_retired()
        .await
        .map_err(|e| format!("registry: listing retired certnames: {e}"))?;
    for name in names {
        let (mut retirement, version) = match registry.get_retirement(&name).await {
            Ok(Some(found)) => found,
            Ok(None) => continue,
            // One unreadable record must not stop every signing: it is reported, the hook and
            // the sweep refuse its certname (fail closed), and the rest goes on.
            Err(e @ schemas::registry::RegistryError::Corrupt { .. }) => {
                report.push(
                    audit,
                    Item {
                        certname: name.clone(),
                        csr_sha256: String::new(),
                        decision: Outcome::Skipped,
                        check: Some(Check::Retired),
                        reason: Some(format!(
                            "the retirement record cannot be read ({e}); its certname is never signed, and nothing the CA holds under it is revoked until it is repaired"
                        )),
                    },
                );
                continue;
            }
            Err(e) => return Err(format!("registry: reading the retirement of {name}: {e}")),
        };
        if retirement.settled() {
            continue;
        }
        let item = |decision, reason: String| Item {
            certname: name.clone(),
            csr_sha256: String::new(),
            decision,
            check: Some(Check::Retired),
            reason: Some(reason),
        };
        if dry_run {
            let holds = ca
                .certificate(&name)
                .await
                .map_err(|e| format!("CA: reading the certificate of retired {name}: {e:#}"))?
                .is_some()
                || ca
                    .csr(&name)
                    .await
                    .map_err(|e| format!("CA: reading the request of retired {name}: {e:#}"))?
                    .is_some();
            if holds {
                report.push(
                    audit,
                    item(
                        Outcome::WouldRevoke,
                        format!("retired: {}", retirement.reason),
                    ),
                );
            }
            continue;
        }
        let cleaned = ca
            .clean(&name)
            .await
            .map_err(|e| format!("CA: revoking and removing retired {name}: {e:#}"))?;
        if cleaned.removed {
            report.push(
                audit,
                item(
                    Outcome::Revoked,
                    match &cleaned.revoked_serial {
                        Some(serial) => format!(
                            "retired ({}); certificate serial {serial} revoked and removed",
                            retirement.reason
                        ),
                        None => format!(
                            "retired ({}); what the CA held under the name was removed",
                            retirement.reason
                        ),
                    },
                ),
            );
        }
        let now = chrono::Utc::now();
        // Record a cleaning that did something, the first one, and the one that settles it;
        // not every empty check in between.
        if !cleaned.removed
            && retirement.cleaned.is_some()
            && now < retirement.retired_at + schemas::retirement::SETTLE
        {
            continue;
        }
        let earlier = retirement.cleaned.take().and_then(|c| c.revoked_serial);
        retirement.cleaned = Some(schemas::retirement::Cleaning {
            at: now,
            by: who.to_owned(),
            revoked_serial: cleaned.revoked_serial.or(earlier),
        });
        match registry.update_retirement(&retirement, &version).await {
            Ok(_) => {}
            Err(schemas::registry::RegistryError::Conflict(_)) => {
                tracing::info!(certname = %name, "retirement changed meanwhile; the next run checks it again");
            }
            Err(e) => return Err(format!("registry: recording the cleaning of {name}: {e}")),
        }
    }
    Ok(())
}

fn registry_message(e: &DecideError) -> String {
    match e {
        DecideError::AutoScaling(why) => format!("auto scaling: {why}"),
        _ => format!("registry: {e}"),
    }
}

#[cfg(test)]
mod tests {
    //! The failure window, deterministically: a scripted CA whose PUT fails once, whose CSR is
    //! swapped between the decision and the signing, or swapped inside the signing call, or that
    //! issued a certificate before. (The real-server paths are in tests/puppet.rs.)
    use super::*;
    use crate::ca::{Issuance, Pending};
    use crate::craft::{self, Spec};
    use crate::memreg::MemRegistry;
    use async_trait::async_trait;
    use schemas::registration::{Registration, sha256_hex};
    use std::sync::Mutex;

    const CN: &str = "0b7d3c59-5b4f-4f8e-9f0e-2d7f1f1f4a11";

    #[derive(Default)]
    struct ScriptedCa {
        csr: Mutex<Option<Vec<u8>>>,
        /// Served by the second `csr()` call onwards (the re-check before signing).
        swap_to: Mutex<Option<Vec<u8>>>,
        fetches: Mutex<usize>,
        fail_puts: Mutex<usize>,
        signed: Mutex<usize>,
        /// Listed before [`CN`]; the real CAs refuse to address names that are not plain.
        extra: Mutex<Vec<String>>,
        /// What `sign` actually signs instead of the pending CSR (a swap the re-check cannot see).
        signs_instead: Mutex<Option<Vec<u8>>>,
        /// The certificate the CA holds (issued by `sign`, or set by a test).
        cert: Mutex<Option<Vec<u8>>>,
        /// Serials issued so far (the inventory); a clean keeps them.
        inventory: Mutex<Vec<u32>>,
        /// The inventory cannot be read.
        inventory_lost: Mutex<bool>,
        revoked: Mutex<usize>,
    }

    impl ScriptedCa {
        fn with_csr(pem: Vec<u8>) -> Self {
            ScriptedCa {
                csr: Mutex::new(Some(pem)),
                ..Default::default()
            }
        }

        /// `puppetserver ca clean`: the certificate goes, its inventory line stays.
        fn clean(&self) {
            *self.cert.lock().unwrap() = None;
        }
    }

    /// A certificate for the key of `csr_pem`, issued by a throwaway CA.
    fn issue(csr_pem: &[u8], serial: u32) -> Vec<u8> {
        use openssl::x509::{X509Builder, X509NameBuilder, X509Req};
        static CA_KEY: std::sync::OnceLock<openssl::pkey::PKey<openssl::pkey::Private>> =
            std::sync::OnceLock::new();
        let ca_key = CA_KEY.get_or_init(|| craft::rsa_key(2048));
        let req = X509Req::from_pem(csr_pem).unwrap();
        let mut name = X509NameBuilder::new().unwrap();
        name.append_entry_by_text("CN", CN).unwrap();
        let name = name.build();
        let mut b = X509Builder::new().unwrap();
        b.set_version(2).unwrap();
        b.set_serial_number(
            &openssl::bn::BigNum::from_u32(serial)
                .unwrap()
                .to_asn1_integer()
                .unwrap(),
        )
        .unwrap();
        b.set_subject_name(&name).unwrap();
        b.set_issuer_name(&name).unwrap();
        b.set_pubkey(&req.public_key().unwrap()).unwrap();
        b.set_not_before(&openssl::asn1::Asn1Time::days_from_now(0).unwrap())
            .unwrap();
        b.set_not_after(&openssl::asn1::Asn1Time::days_from_now(1).unwrap())
            .unwrap();
        b.sign(ca_key, openssl::hash::MessageDigest::sha256())
            .unwrap();
        b.build().to_pem().unwrap()
    }

    #[async_trait]
    impl Ca for ScriptedCa {
        fn describe(&self) -> String {
            "scripted".into()
        }
        async fn pending(&self) -> Result<Vec<Pending>> {
            let extra = self.extra.lock().unwrap().clone();
            Ok(extra
                .into_iter()
                .chain(self.csr.lock().unwrap().iter().map(|_| CN.to_owned()))
                .map(|name| Pending::new(name, None))
                .collect())
        }
        async fn csr(&self, name: &str) -> Result<Option<Vec<u8>>> {
            if name != CN {
                anyhow::bail!("CA listed a certname `{name}` that is not a plain name");
            }
            let mut n = self.fetches.lock().unwrap();
            *n += 1;
            if *n > 1
                && let Some(s) = self.swap_to.lock().unwrap().clone()
            {
                return Ok(Some(s));
            }
            Ok(self.csr.lock().unwrap().clone())
        }
        async fn sign(&self, _: &str) -> Result<SignOutcome> {
            let mut f = self.fail_puts.lock().unwrap();
            if *f > 0 {
                *f -= 1;
                anyhow::bail!("connection reset");
            }
            *self.signed.lock().unwrap() += 1;
            let pending = self.csr.lock().unwrap().take().expect("a pending CSR");
            let signed = self.signs_instead.lock().unwrap().take().unwrap_or(pending);
            let mut inv = self.inventory.lock().unwrap();
            let serial = inv.len() as u32 + 2;
            inv.push(serial);
            *self.cert.lock().unwrap() = Some(issue(&signed, serial));
            Ok(SignOutcome::Signed)
        }
        async fn remove_request(&self, _: &str) -> Result<bool> {
            Ok(self.csr.lock().unwrap().take().is_some())
        }
        async fn issued(&self, _: &str) -> Result<Issuance> {
            if *self.inventory_lost.lock().unwrap() {
                anyhow::bail!("reading the CA inventory: No such file or directory");
            }
            let inv = self.inventory.lock().unwrap();
            Ok(match inv.last() {
                None => Issuance::Never,
                Some(s) => Issuance::Issued(format!("serial 0x{s:04x} in inventory.txt")),
            })
        }
        async fn certificate(&self, _: &str) -> Result<Option<Vec<u8>>> {
            Ok(self.cert.lock().unwrap().clone())
        }
        async fn revoke(&self, _: &str) -> Result<bool> {
            *self.revoked.lock().unwrap() += 1;
            Ok(self.cert.lock().unwrap().is_some())
        }
        async fn clean(&self, name: &str) -> Result<crate::ca::Cleaned> {
            assert_eq!(name, CN);
            let serial = self.cert.lock().unwrap().take().map(|pem| {
                *self.revoked.lock().unwrap() += 1;
                openssl::x509::X509::from_pem(&pem)
                    .unwrap()
                    .serial_number()
                    .to_bn()
                    .unwrap()
                    .to_hex_str()
                    .unwrap()
                    .to_string()
            });
            let request = self.csr.lock().unwrap().take().is_some();
            Ok(crate::ca::Cleaned {
                removed: serial.is_some() || request,
                revoked_serial: serial,
            })
        }
    }

    fn retirement() -> schemas::retirement::Retirement {
        schemas::retirement::Retirement::new(
            CN,
            "i-0123456789abcdef0",
            None,
            "EC2 reports i-0123456789abcdef0 terminated",
            "ops@ws",
            chrono::Utc::now(),
        )
    }

    /// An instance enrolled, then terminated and reaped: the sweep revokes its certificate
    /// (recording the serial), keeps checking until the retirement settles, and never signs a
    /// new request under the name. `--dry-run` changes nothing.
    #[tokio::test]
    async fn a_retired_certname_is_revoked_once_settled_and_never_signed_again() {
        let dir = tempfile::tempdir().unwrap();
        let c = cfg(dir.path());
        let mem = MemRegistry::default();
        registered(&mem).await;
        let ca = ScriptedCa::with_csr(Spec::new(CN, "s").build(&craft::rsa_key(2048)));
        assert_eq!(sweep_with(&c, &mem, &ca, false).await.signed, 1);
        assert!(mem.retire(&retirement()).await.unwrap());

        let r = sweep_with(&c, &mem, &ca, true).await;
        assert_eq!((r.would_revoke, r.revoked), (1, 0), "{r:?}");
        assert!(ca.cert.lock().unwrap().is_some(), "dry run revokes nothing");
        assert!(
            mem.get_retirement(CN)
                .await
                .unwrap()
                .unwrap()
                .0
                .cleaned
                .is_none()
        );

        let r = sweep_with(&c, &mem, &ca, false).await;
        assert_eq!(r.revoked, 1, "{r:?}");
        assert!(!r.failed(), "{r:?}");
        assert_eq!(r.items[0].check, Some(Check::Retired));
        assert!(ca.cert.lock().unwrap().is_none());
        let (rec, v) = mem.get_retirement(CN).await.unwrap().unwrap();
        assert_eq!(
            rec.cleaned.as_ref().unwrap().revoked_serial.as_deref(),
            Some("02")
        );
        assert!(
            !rec.settled(),
            "cleaned right after the retirement: not settled yet"
        );

        // A new request under the retired name, with the right secret: removed, never signed.
        *ca.csr.lock().unwrap() = Some(Spec::new(CN, "s").build(&craft::rsa_key(2048)));
        let r = sweep_with(&c, &mem, &ca, false).await;
        assert_eq!((r.signed, r.revoked), (0, 1), "{r:?}");
        assert!(ca.csr.lock().unwrap().is_none());
        assert_eq!(
            mem.get_retirement(CN)
                .await
                .unwrap()
                .unwrap()
                .0
                .cleaned
                .unwrap()
                .revoked_serial
                .as_deref(),
            Some("02"),
            "the revoked serial is kept across later cleanings"
        );

        // Settled: the sweep stops cleaning, and a request is refused by the decision instead.
        let mut old = mem.get_retirement(CN).await.unwrap().unwrap().0;
        old.retired_at -= schemas::retirement::SETTLE;
        let (_, v2) = mem.get_retirement(CN).await.unwrap().unwrap();
        assert_ne!(v, v2);
        mem.update_retirement(&old, &v2).await.unwrap();
        *ca.csr.lock().unwrap() = Some(Spec::new(CN, "s").build(&craft::rsa_key(2048)));
        let r = sweep_with(&c, &mem, &ca, false).await;
        assert_eq!((r.signed, r.revoked, r.rejected), (0, 0, 1), "{r:?}");
        assert_eq!(r.items[0].check, Some(Check::Retired));
        assert_eq!(*ca.signed.lock().unwrap(), 1);
    }

    /// One unreadable retirement record is reported and its certname never signed; the rest of
    /// the run goes on (a legitimate CSR is signed).
    #[tokio::test]
    async fn an_unreadable_retirement_is_reported_and_the_rest_goes_on() {
        let dir = tempfile::tempdir().unwrap();
        let c = cfg(dir.path());
        let mem = MemRegistry::default();
        registered(&mem).await;
        let broken = "1b7d3c59-5b4f-4f8e-9f0e-2d7f1f1f4a11";
        let mut r = retirement();
        r.certname = broken.into();
        mem.retire(&r).await.unwrap();
        mem.corrupt_retired.lock().unwrap().insert(broken.into());
        let ca = ScriptedCa::with_csr(Spec::new(CN, "s").build(&craft::rsa_key(2048)));
        let r = sweep_with(&c, &mem, &ca, false).await;
        assert_eq!((r.signed, r.skipped), (1, 1), "{r:?}");
        assert_eq!(r.items[0].certname, broken);
        assert!(
            r.items[0]
                .reason
                .as_deref()
                .unwrap()
                .contains("never signed")
        );
    }

    /// The registry cannot list retirements: the run stops before anything is signed.
    #[tokio::test]
    async fn an_unreadable_retirement_list_stops_the_run() {
        let dir = tempfile::tempdir().unwrap();
        let c = cfg(dir.path());
        let mem = MemRegistry::default();
        registered(&mem).await;
        mem.down.store(true, std::sync::atomic::Ordering::SeqCst);
        let ca = ScriptedCa::with_csr(Spec::new(CN, "s").build(&craft::rsa_key(2048)));
        let r = sweep_with(&c, &mem, &ca, false).await;
        assert!(
            r.failed() && r.error.as_deref().unwrap().contains("retired"),
            "{r:?}"
        );
        assert_eq!(*ca.signed.lock().unwrap(), 0);
    }

    fn cfg(dir: &std::path::Path) -> SignerConfig {
        let mut c = SignerConfig::parse("t.yaml", "registry: file:///unused\n").unwrap();
        c.audit_log = dir.join("audit.jsonl");
        c.lock_file = dir.join("lock");
        c
    }

    async fn registered(mem: &MemRegistry) {
        let r = Registration::new(
            CN,
            &sha256_hex(b"s"),
            "t",
            chrono::Utc::now(),
            chrono::Duration::minutes(5),
        );
        mem.create(&r).await.unwrap();
    }

    #[tokio::test]
    async fn a_failed_put_after_consuming_is_retried_for_the_same_csr_only() {
        let dir = tempfile::tempdir().unwrap();
        let mut c = cfg(dir.path());
        let mem = MemRegistry::default();
        registered(&mem).await;
        let key = craft::rsa_key(2048);
        let ca = ScriptedCa {
            csr: Mutex::new(Some(Spec::new(CN, "s").build(&key))),
            fail_puts: Mutex::new(1),
            ..Default::default()
        };
        let r = sweep_with(&c, &mem, &ca, false).await;
        assert!(
            r.failed() && r.error.as_deref().unwrap().contains("next run retries"),
            "{r:?}"
        );
        assert!(mem.peek(CN).unwrap().consumed.is_some());
        assert_eq!(*ca.signed.lock().unwrap(), 0);
        // Within the grace period the consumer is left alone; after it, the same CSR is signed once.
        let r = sweep_with(&c, &mem, &ca, false).await;
        assert_eq!((r.signed, r.rejected), (0, 1), "{r:?}");
        c.deadlines.hook = std::time::Duration::from_millis(1);
        let grace_s = 10; // the floor of the retry grace
        let mut rec = mem.peek(CN).unwrap();
        rec.consumed.as_mut().unwrap().at -= chrono::Duration::seconds(grace_s + 1);
        let (_, v) = mem.get(CN).await.unwrap().unwrap();
        mem.update(&rec, &v).await.unwrap();
        let r = sweep_with(&c, &mem, &ca, false).await;
        assert_eq!(r.signed, 1, "{r:?}");
        assert_eq!(*ca.signed.lock().unwrap(), 1);
        // A different CSR under the consumed name is a replay.
        *ca.csr.lock().unwrap() = Some(Spec::new(CN, "s").build(&craft::rsa_key(2048)));
        let r = sweep_with(&c, &mem, &ca, false).await;
        assert_eq!((r.signed, r.rejected), (0, 1), "{r:?}");
        assert!(r.items[0].reason.as_deref().unwrap().contains("replay"));
    }

    #[tokio::test]
    async fn a_csr_swapped_before_signing_is_not_signed() {
        let dir = tempfile::tempdir().unwrap();
        let c = cfg(dir.path());
        let mem = MemRegistry::default();
        registered(&mem).await;
        let key = craft::rsa_key(2048);
        let ca = ScriptedCa {
            csr: Mutex::new(Some(Spec::new(CN, "s").build(&key))),
            swap_to: Mutex::new(Some(Spec::new(CN, "s").build(&craft::rsa_key(2048)))),
            ..Default::default()
        };
        let r = sweep_with(&c, &mem, &ca, false).await;
        assert_eq!(*ca.signed.lock().unwrap(), 0);
        assert!(
            r.items[0]
                .reason
                .as_deref()
                .unwrap()
                .contains("replaced before signing"),
            "{r:?}"
        );
    }

    /// A group member's request that the hook approved and the CA has not signed yet is refused
    /// by a concurrent sweep as `consume` (the instance is enrolled under this very name, see
    /// `decide::Decider::enroll`): never evicted, or the approved instance would lose its
    /// request and, enrolled once, never get a certificate.
    #[test]
    fn an_enrolled_members_own_request_is_never_evicted() {
        assert!(!squats(Check::Consume));
        assert!(squats(Check::Identity));
    }

    #[tokio::test]
    async fn a_request_squatting_on_a_pending_registration_is_evicted_and_nothing_else() {
        let dir = tempfile::tempdir().unwrap();
        let mut c = cfg(dir.path());
        let mem = MemRegistry::default();
        registered(&mem).await;
        let key = craft::rsa_key(2048);
        // The certname is known, the secret is not: refused, then removed so the instance can enrol.
        let ca = ScriptedCa {
            csr: Mutex::new(Some(Spec::new(CN, "guess").build(&key))),
            ..Default::default()
        };
        let r = sweep_with(&c, &mem, &ca, true).await;
        assert_eq!(
            (r.rejected, r.evicted),
            (1, 0),
            "--dry-run evicts nothing: {r:?}"
        );
        let r = sweep_with(&c, &mem, &ca, false).await;
        assert_eq!((r.rejected, r.evicted, r.signed), (1, 1, 0), "{r:?}");
        assert!(ca.csr.lock().unwrap().is_none(), "the request is gone");
        assert!(mem.peek(CN).unwrap().consumed.is_none());
        let audit = std::fs::read_to_string(&c.audit_log).unwrap();
        assert!(audit.contains("\"decision\":\"evicted\""), "{audit}");
        // No registration, or the switch off: the request stays for the operator to see.
        for (with_reg, evict) in [(false, true), (true, false)] {
            let mem = MemRegistry::default();
            if with_reg {
                registered(&mem).await;
            }
            c.policy.evict_squatting_requests = evict;
            let ca = ScriptedCa {
                csr: Mutex::new(Some(Spec::new(CN, "guess").build(&key))),
                ..Default::default()
            };
            let r = sweep_with(&c, &mem, &ca, false).await;
            assert_eq!((r.rejected, r.evicted), (1, 0), "{r:?}");
            assert!(ca.csr.lock().unwrap().is_some());
        }
    }

    /// Age the consumption past the retry grace (and shrink the grace to its 10 s floor).
    async fn age_consumption(mem: &MemRegistry, c: &mut SignerConfig) {
        c.deadlines.hook = std::time::Duration::from_millis(1);
        let mut rec = mem.peek(CN).unwrap();
        rec.consumed.as_mut().unwrap().at -= chrono::Duration::seconds(11);
        let (_, v) = mem.get(CN).await.unwrap().unwrap();
        mem.update(&rec, &v).await.unwrap();
    }

    #[tokio::test]
    async fn a_decommissioned_node_is_never_signed_again() {
        let dir = tempfile::tempdir().unwrap();
        let mut c = cfg(dir.path());
        let mem = MemRegistry::default();
        registered(&mem).await;
        let pem = Spec::new(CN, "s").build(&craft::rsa_key(2048));
        let ca = ScriptedCa::with_csr(pem.clone());
        let r = sweep_with(&c, &mem, &ca, false).await;
        assert_eq!(r.signed, 1, "{r:?}");
        // Decommissioned (cleaned), then the same CSR comes back byte for byte.
        ca.clean();
        *ca.csr.lock().unwrap() = Some(pem);
        age_consumption(&mem, &mut c).await;
        for dry_run in [true, false] {
            let r = sweep_with(&c, &mem, &ca, dry_run).await;
            assert_eq!((r.signed, r.would_sign, r.rejected), (0, 0, 1), "{r:?}");
            assert_eq!(r.items[0].check, Some(Check::Registration));
            let why = r.items[0].reason.as_deref().unwrap();
            assert!(
                why.contains("certificate was issued") && why.contains("serial 0x0002"),
                "{why}"
            );
            assert_eq!(r.exit_code(), exit::OK);
        }
        assert_eq!(*ca.signed.lock().unwrap(), 1);
        // If the CA's records cannot be read, nothing is signed either (and the run says so).
        *ca.inventory.lock().unwrap() = Vec::new();
        *ca.inventory_lost.lock().unwrap() = true;
        let r = sweep_with(&c, &mem, &ca, false).await;
        assert_eq!((r.signed, r.errors), (0, 1), "{r:?}");
        assert!(
            r.items[0]
                .reason
                .as_deref()
                .unwrap()
                .contains("cannot establish that no certificate was ever issued"),
            "{r:?}"
        );
        assert_eq!(r.exit_code(), exit::UNAVAILABLE);
        assert_eq!(*ca.signed.lock().unwrap(), 1);
    }

    #[tokio::test]
    async fn a_csr_swapped_inside_the_signing_call_is_revoked_as_an_incident() {
        let dir = tempfile::tempdir().unwrap();
        let c = cfg(dir.path());
        let mem = MemRegistry::default();
        registered(&mem).await;
        let checked = Spec::new(CN, "s").build(&craft::rsa_key(2048));
        let ca = ScriptedCa::with_csr(checked.clone());
        *ca.signs_instead.lock().unwrap() = Some(Spec::new(CN, "s").build(&craft::rsa_key(2048)));
        let r = sweep_with(&c, &mem, &ca, false).await;
        assert_eq!((r.signed, r.incidents), (0, 1), "{r:?}");
        assert_eq!(*ca.revoked.lock().unwrap(), 1);
        assert_eq!(r.exit_code(), exit::INCIDENT);
        let i = &r.items[0];
        assert_eq!(i.decision, Outcome::Incident);
        assert_eq!(i.csr_sha256, crate::csr::fingerprint(&checked));
        let why = i.reason.as_deref().unwrap();
        assert!(
            why.contains("another key") && why.contains("was revoked"),
            "{why}"
        );
        let audit = std::fs::read_to_string(&c.audit_log).unwrap();
        assert!(audit.contains("\"decision\":\"incident\""), "{audit}");
        // A certificate that cannot be read back is not left valid either.
        let mem = MemRegistry::default();
        registered(&mem).await;
        struct Unreadable(ScriptedCa);
        #[async_trait]
        impl Ca for Unreadable {
            fn describe(&self) -> String {
                "unreadable".into()
            }
            async fn pending(&self) -> Result<Vec<Pending>> {
                self.0.pending().await
            }
            async fn csr(&self, n: &str) -> Result<Option<Vec<u8>>> {
                self.0.csr(n).await
            }
            async fn sign(&self, n: &str) -> Result<SignOutcome> {
                self.0.sign(n).await
            }
            async fn remove_request(&self, n: &str) -> Result<bool> {
                self.0.remove_request(n).await
            }
            async fn revoke(&self, n: &str) -> Result<bool> {
                self.0.revoke(n).await
            }
        }
        let ca = Unreadable(ScriptedCa::with_csr(checked));
        let r = sweep_with(&c, &mem, &ca, false).await;
        assert_eq!((r.signed, r.incidents), (0, 1), "{r:?}");
        assert_eq!(*ca.0.revoked.lock().unwrap(), 1);
        assert!(
            r.items[0]
                .reason
                .as_deref()
                .unwrap()
                .contains("cannot be read"),
            "{r:?}"
        );
    }

    #[tokio::test]
    async fn one_unaddressable_entry_is_skipped_and_the_rest_is_decided() {
        let dir = tempfile::tempdir().unwrap();
        let c = cfg(dir.path());
        let mem = MemRegistry::default();
        registered(&mem).await;
        let ca = ScriptedCa {
            csr: Mutex::new(Some(Spec::new(CN, "s").build(&craft::rsa_key(2048)))),
            extra: Mutex::new(vec!["!evil".into(), "evil\n\u{1b}[31mname".into()]),
            ..Default::default()
        };
        let r = sweep_with(&c, &mem, &ca, false).await;
        assert_eq!(*ca.signed.lock().unwrap(), 1, "{r:?}");
        assert_eq!((r.signed, r.skipped, r.pending), (1, 2, 3), "{r:?}");
        assert!(r.error.is_none(), "{r:?}");
        assert_eq!(r.exit_code(), exit::SKIPPED, "{r:?}");
        let skipped: Vec<&Item> = r
            .items
            .iter()
            .filter(|i| i.decision == Outcome::Skipped)
            .collect();
        assert_eq!(skipped.len(), 2, "{r:?}");
        // Reported escaped: a listed name never puts control characters into a log.
        assert!(
            skipped
                .iter()
                .all(|i| !i.certname.chars().any(char::is_control)),
            "{skipped:?}"
        );
        let audit = std::fs::read_to_string(&c.audit_log).unwrap();
        assert!(audit.contains("\"decision\":\"skipped\""), "{audit}");
    }

    #[test]
    fn the_lock_keeps_a_second_sweep_out() {
        let dir = tempfile::tempdir().unwrap();
        let c = cfg(dir.path());
        let held = try_lock(&c).unwrap().expect("first lock");
        assert!(try_lock(&c).unwrap().is_none());
        drop(held);
        assert!(try_lock(&c).unwrap().is_some());
    }
}
