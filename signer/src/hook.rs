//! `signer autosign CERTNAME`: Puppet Server's policy-based autosign executable.
//!
//! The CSR PEM arrives on stdin; exit 0 means "sign", anything else leaves it pending. Puppet
//! imposes no timeout, so the run has its own hard deadline: an async timeout around the decision,
//! and a watchdog thread that exits the process if even reading stdin hangs. If the deadline
//! strikes after the registration was consumed, the CSR stays pending and the sweep's retry rule
//! (same CSR fingerprint) signs it later.

use crate::audit::{AuditLog, Outcome, Record};
use crate::decide::{Decider, Mode};
use crate::identity::TrustedCerts;
use schemas::registry::RegistryOptions;
use schemas::signer_config::SignerConfig;
use std::io::Read;
use std::time::{Duration, Instant};

/// Exit codes of `signer autosign` (and of `signer` generally).
pub mod exit {
    /// Approved (hook: Puppet signs); sweep: ran to completion.
    pub const OK: u8 = 0;
    /// Rejected: the CSR stays pending.
    pub const REJECTED: u8 = 1;
    /// Bad usage or configuration.
    pub const CONFIG: u8 = 2;
    /// Registry or CA unreachable, or another infrastructure failure: nothing signed.
    pub const UNAVAILABLE: u8 = 3;
    /// The hook's deadline ran out: nothing approved.
    pub const DEADLINE: u8 = 4;
    /// Sweep: a certificate was issued for something other than the checked CSR (a security
    /// incident); it was revoked, or the report says revoking failed.
    pub const INCIDENT: u8 = 5;
    /// Sweep: the run completed, but some listed entries could not be decided and were skipped
    /// (`skipped` in the report); they stay at the CA for an operator.
    pub const SKIPPED: u8 = 6;
}

/// Run the hook; returns the exit code. Every path writes one audit line (except a watchdog exit,
/// which can only print to stderr).
/// `trust` is the pinned AWS certificate bundle, loaded once by the caller (`cli`).
pub fn run(cfg: &SignerConfig, trust: &TrustedCerts, certname: &str) -> u8 {
    let deadline = cfg.deadlines.hook;
    let started = Instant::now();
    let watchdog_certname: String = certname.chars().take(255).collect();
    // Last resort: whatever blocks (stdin, DNS, a wedged syscall), the process ends, rejecting.
    std::thread::spawn(move || {
        std::thread::sleep(deadline + Duration::from_millis(500));
        eprintln!(
            "signer: rejected {watchdog_certname}: deadline: no decision within {deadline:?} (watchdog)"
        );
        std::process::exit(i32::from(exit::DEADLINE));
    });
    let audit = AuditLog::new(&cfg.audit_log);
    let log = |rec: Record| -> bool {
        match audit.write(&rec) {
            Ok(()) => true,
            Err(e) => {
                eprintln!(
                    "signer: cannot write the audit log {}: {e}",
                    audit.path().display()
                );
                false
            }
        }
    };

    // Read at most max+1 bytes: larger input is refused without being read in full.
    let mut pem = Vec::new();
    let limit = cfg.policy.max_csr_bytes as u64 + 1;
    if let Err(e) = std::io::stdin().lock().take(limit).read_to_end(&mut pem) {
        eprintln!("signer: rejected {certname}: input: reading the CSR from stdin: {e}");
        let _ = log(Record::new(
            Mode::Hook,
            certname,
            "",
            Outcome::Error,
            None,
            Some(format!("reading stdin: {e}")),
        ));
        return exit::UNAVAILABLE;
    }

    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("signer: cannot start the async runtime: {e}");
            return exit::UNAVAILABLE;
        }
    };
    let remaining = deadline.saturating_sub(started.elapsed());
    let sha_of_input = crate::csr::fingerprint(&pem);
    let result = rt.block_on(async {
        tokio::time::timeout(remaining, decide(cfg, trust, certname, &pem)).await
    });
    match result {
        Ok(Ok((sha, Ok(note)))) => {
            // No audit line, no signature: the registration stays consumed for this CSR and
            // the sweep's retry rule signs it once the audit log is writable again.
            if !log(Record::new(
                Mode::Hook,
                certname,
                &sha,
                Outcome::Approved,
                None,
                note,
            )) {
                eprintln!("signer: not signing {certname}: the decision could not be audited");
                return exit::UNAVAILABLE;
            }
            tracing::info!(certname, csr_sha256 = %sha, "approved");
            exit::OK
        }
        Ok(Ok((sha, Err(rej)))) => {
            eprintln!(
                "signer: rejected {certname}: {:?}: {}",
                rej.check, rej.reason
            );
            let _ = log(Record::new(
                Mode::Hook,
                certname,
                &sha,
                Outcome::Rejected,
                Some(rej.check),
                Some(rej.reason),
            ));
            exit::REJECTED
        }
        Ok(Err(e)) => {
            eprintln!("signer: not signing {certname}: {e:#}");
            let _ = log(Record::new(
                Mode::Hook,
                certname,
                &sha_of_input,
                Outcome::Error,
                None,
                Some(format!("{e:#}")),
            ));
            exit::UNAVAILABLE
        }
        Err(_) => {
            eprintln!("signer: rejected {certname}: deadline: no decision within {deadline:?}");
            let _ = log(Record::new(
                Mode::Hook,
                certname,
                &sha_of_input,
                Outcome::Error,
                None,
                Some(format!("deadline of {deadline:?} ran out")),
            ));
            exit::DEADLINE
        }
    }
}

/// Decide and consume: the CSR's SHA-256 and either the approval's audit note or the rejection.
async fn decide(
    cfg: &SignerConfig,
    trust: &TrustedCerts,
    certname: &str,
    pem: &[u8],
) -> anyhow::Result<(String, Result<Option<String>, crate::decide::Rejection>)> {
    let opts = RegistryOptions {
        region: cfg.region.clone(),
        profile: cfg.profile.clone(),
        endpoint_url: None,
    };
    let registry = schemas::registry::open(&cfg.registry, &opts).await?;
    let asg = if cfg.policy.groups.asg_membership {
        Some(crate::asg::AutoScaling::new(&opts).await)
    } else {
        None
    };
    let decider = Decider {
        membership: asg.as_ref().map(|a| a as &dyn crate::asg::Membership),
        trust,
        registry: registry.as_ref(),
        policy: &cfg.policy,
        registry_deadline: cfg.deadlines.registry,
        who: format!("autosign@{}", crate::ca::hostname()),
        retry_grace: chrono::Duration::zero(),
    };
    let now = chrono::Utc::now();
    let ev = decider.evaluate(certname, pem, Mode::Hook, now).await?;
    let approval = match ev.verdict {
        Ok(a) => a,
        Err(r) => return Ok((ev.csr_sha256, Err(r))),
    };
    match decider.consume(&approval, &ev.csr_sha256, now).await? {
        Ok(_) => Ok((ev.csr_sha256, Ok(approval.note))),
        Err(r) => Ok((ev.csr_sha256, Err(r))),
    }
}
