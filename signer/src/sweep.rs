//! `signer sweep`: decide every pending CSR the CA holds, and sign the approved ones.
//!
//! Per CSR: fetch it (checking it against the listed fingerprint), evaluate, consume the
//! registration (compare-and-swap), fetch it **again** and compare its SHA-256 with the one that
//! was decided, then `PUT certificate_status/<name>` `{"desired_state":"signed"}`.
//! An exclusive lock on `lock_file` keeps overlapping runs on one host apart; the CAS keeps
//! signers on different hosts (or the hook and a sweep) apart.

use crate::audit::{AuditLog, Outcome, Record};
use crate::ca::{Ca, SignOutcome};
use crate::decide::{Check, DecideError, Decider, Mode};
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
            _ => tracing::info!(certname = %item.certname, decision = ?item.decision, "decided"),
        }
        self.items.push(item);
    }

    /// Whether the run failed in a way that must give a non-zero exit.
    pub fn failed(&self) -> bool {
        self.error.is_some() || self.errors > 0
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
                format!("request refused by the {check:?} check removed from the CA so the registered instance can submit its own"),
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
    let decider = Decider {
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
    let pending = match ca.pending().await {
        Ok(p) => p,
        Err(e) => {
            report.error = Some(format!("listing pending CSRs: {e:#}"));
            return report;
        }
    };
    report.pending = pending.len();
    for p in pending {
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
            Ok(SignOutcome::Signed) => report.push(
                &audit,
                item(
                    &ev.csr_sha256,
                    Outcome::Signed,
                    None,
                    approval_note(&approval),
                ),
            ),
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

fn registry_message(e: &DecideError) -> String {
    format!("registry: {e}")
}

#[cfg(test)]
mod tests {
    //! The failure window, deterministically: a scripted CA whose PUT fails once, or whose CSR is
    //! swapped between the decision and the signing. (The real-server paths are in tests/puppet.rs.)
    use super::*;
    use crate::ca::Pending;
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
    }

    #[async_trait]
    impl Ca for ScriptedCa {
        fn describe(&self) -> String {
            "scripted".into()
        }
        async fn pending(&self) -> Result<Vec<Pending>> {
            Ok(self
                .csr
                .lock()
                .unwrap()
                .iter()
                .map(|_| Pending {
                    name: CN.into(),
                    sha256: None,
                })
                .collect())
        }
        async fn csr(&self, _: &str) -> Result<Option<Vec<u8>>> {
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
            *self.csr.lock().unwrap() = None;
            Ok(SignOutcome::Signed)
        }
        async fn remove_request(&self, _: &str) -> Result<bool> {
            Ok(self.csr.lock().unwrap().take().is_some())
        }
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
