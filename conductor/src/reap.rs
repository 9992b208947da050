//! `conductor reap`: mark the registrations and group members whose instances EC2 reports
//! terminated as retired in the registry, so the signer refuses their certnames and `signer sweep`
//! revokes their certificates.
//!
//! **A running instance is never reaped.** The rules:
//!
//! - Candidates are every registration with an instance id (in any state) and every group
//!   member, minus the certnames already retired. A registration without an instance id is
//!   reported as `no-instance` and left alone.
//! - Every state is gathered first: `DescribeInstances` with the `instance-id` *filter* (an id
//!   EC2 does not know is then simply absent, not an error), at most [`MAX_BATCH`] ids a call,
//!   paginated, per region (a registration's `identity.region`, else the configured region; a
//!   member's group's region). Throttling and 5xx answers are retried with backoff
//!   ([`crate::ec2::reap_client`]). If any call still fails, or times out, **nothing is written**.
//! - Then each candidate is classified ([`classify`]): `terminated` is retired;
//!   `pending`, `running`, `stopping`, `stopped`, `shutting-down` (and any state this build does
//!   not know) are kept; an instance absent from every answer is `missing`, retired only with
//!   `--retire-missing`, when its record is older than [`MISSING_MIN_AGE`] and the caller's
//!   account (STS `GetCallerIdentity`) is the record's.
//! - Retirements are written create-only ([`Registry::retire`]), one audit line each (target
//!   `audit`). A write that fails is reported and the others go on (exit 3).

use crate::cli::{Cli, Format, ReapArgs};
use crate::ec2::{self, Ec2Error};
use crate::{UsageError, exit, output};
use anyhow::Context;
use chrono::{DateTime, Utc};
use schemas::conductor_config::ConductorConfig;
use schemas::registry::Registry;
use schemas::retirement::Retirement;
use serde::Serialize;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

/// The most instance ids one `DescribeInstances` call asks about.
pub const MAX_BATCH: usize = 100;

/// How old a record must be before `--retire-missing` retires it when EC2 does not report its
/// instance: EC2 forgets terminated instances after about an hour, but may also not yet show
/// one that was just launched.
pub const MISSING_MIN_AGE: chrono::Duration = chrono::Duration::hours(2);

/// The EC2 states of an instance that exists (or is on its way out but not gone): kept.
pub const LIVE_STATES: &[&str] = &["pending", "running", "stopping", "stopped", "shutting-down"];

/// A certname whose instance reap asks EC2 about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Candidate {
    pub certname: String,
    pub instance_id: String,
    /// The enrollment group, for a member.
    pub group: Option<String>,
    /// Where EC2 is asked about the instance.
    pub region: String,
    /// The account the record is bound to (`identity.account_id`, the group's `account_id`).
    pub account_id: Option<String>,
    /// When the record was written (`created_at`, a member's `enrolled_at`).
    pub recorded_at: DateTime<Utc>,
}

/// What the rules make of one candidate, before anything is written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Retire it; the reason is recorded in the retirement.
    Retire(String),
    /// EC2 reports the instance alive (or in a state reap does not know).
    Keep(String),
    /// EC2 does not report the instance, and it is kept.
    Missing(String),
}

/// What reap did (or, with `--dry-run`, would do) with one certname.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Action {
    /// This run wrote the retirement.
    Retired,
    /// `--dry-run`: would have been retired.
    WouldRetire,
    /// Retired before (by an earlier run, or concurrently by another).
    AlreadyRetired,
    /// Its instance exists: kept.
    Keep,
    /// EC2 does not report its instance: kept.
    Missing,
    /// A registration without an instance id: nothing to ask EC2.
    NoInstance,
    /// The retirement could not be written (see `reason`).
    Failed,
}

impl std::fmt::Display for Action {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Action::Retired => "retired",
            Action::WouldRetire => "would-retire",
            Action::AlreadyRetired => "already-retired",
            Action::Keep => "keep",
            Action::Missing => "missing",
            Action::NoInstance => "no-instance",
            Action::Failed => "failed",
        })
    }
}

/// One line of the result.
#[derive(Debug, Clone, Serialize)]
pub struct Item {
    pub certname: String,
    pub instance_id: Option<String>,
    pub group: Option<String>,
    pub region: Option<String>,
    /// What EC2 reported; `null` when it did not report the instance (or was not asked).
    pub ec2_state: Option<String>,
    pub action: Action,
    pub reason: String,
}

/// The whole result, as `--output json` prints it.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub dry_run: bool,
    pub retired: usize,
    pub would_retire: usize,
    pub already_retired: usize,
    pub kept: usize,
    pub missing: usize,
    pub no_instance: usize,
    pub failed: usize,
    pub items: Vec<Item>,
}

impl Report {
    fn new(dry_run: bool, items: Vec<Item>) -> Report {
        let count = |a: Action| items.iter().filter(|i| i.action == a).count();
        Report {
            dry_run,
            retired: count(Action::Retired),
            would_retire: count(Action::WouldRetire),
            already_retired: count(Action::AlreadyRetired),
            kept: count(Action::Keep),
            missing: count(Action::Missing),
            no_instance: count(Action::NoInstance),
            failed: count(Action::Failed),
            items,
        }
    }
}

/// Apply the rules to one candidate. `ec2_state` is what EC2 reported (`None`: absent from every
/// answer); `caller_account` is the account of the credentials in use (asked only for
/// `--retire-missing`).
pub fn classify(
    c: &Candidate,
    ec2_state: Option<&str>,
    retire_missing: bool,
    caller_account: Option<&str>,
    now: DateTime<Utc>,
) -> Verdict {
    let id = &c.instance_id;
    match ec2_state {
        Some("terminated") => Verdict::Retire(format!("EC2 reports {id} terminated")),
        Some(s) if LIVE_STATES.contains(&s) => Verdict::Keep(format!("EC2 reports {id} {s}")),
        Some(s) => Verdict::Keep(format!(
            "EC2 reports {id} in state `{}`, which reap does not know; kept",
            s.chars().take(40).collect::<String>()
        )),
        None => {
            let absent = format!("EC2 does not report {id} in {}", c.region);
            if !retire_missing {
                return Verdict::Missing(format!(
                    "{absent}; kept (--retire-missing retires it once the record is older than 2 hours)"
                ));
            }
            let age = now - c.recorded_at;
            if age < MISSING_MIN_AGE {
                return Verdict::Missing(format!(
                    "{absent}; kept: the record is {} min old, younger than 2 hours (EC2 may not show a just-launched instance yet)",
                    age.num_minutes().max(0)
                ));
            }
            let Some(account) = c.account_id.as_deref() else {
                return Verdict::Missing(format!(
                    "{absent}; kept: the record names no account, so this account's EC2 cannot vouch that the instance is gone"
                ));
            };
            match caller_account {
                Some(caller) if caller == account => Verdict::Retire(format!(
                    "EC2 does not report {id} in account {account}, region {}; the record is older than 2 hours",
                    c.region
                )),
                Some(caller) => Verdict::Missing(format!(
                    "{absent}; kept: the record is in account {account}, the caller in {caller}"
                )),
                None => {
                    Verdict::Missing(format!("{absent}; kept: the caller's account is unknown"))
                }
            }
        }
    }
}

/// How reap talks to EC2 (hidden options exist only for tests).
#[derive(Debug, Clone, Copy)]
pub struct Ec2Settings {
    pub batch_size: usize,
    pub max_attempts: u32,
    pub attempt_timeout: Duration,
}

/// `conductor reap`.
pub async fn reap(
    cfg: &ConductorConfig,
    cli: &Cli,
    args: &ReapArgs,
    format: Format,
) -> anyhow::Result<u8> {
    let settings = Ec2Settings {
        batch_size: (args.batch_size as usize).clamp(1, MAX_BATCH),
        max_attempts: args.max_attempts,
        attempt_timeout: Duration::from_millis(args.attempt_timeout_ms),
    };
    let registry = crate::open_registry(cfg, cli).await?;
    let sdk = schemas::registry::aws::sdk_config(&crate::aws_options(cfg, cli)).await;
    let configured_region = sdk
        .region()
        .map(|r| r.as_ref().to_owned())
        .filter(|r| !r.is_empty());

    let (candidates, mut items) = candidates(&registry, configured_region.as_deref()).await?;

    // Every state first; any failure and nothing is written.
    let states = match ask_ec2(&sdk, &candidates, settings).await {
        Ok(states) => states,
        Err(e) => anyhow::bail!("{e}; nothing was retired"),
    };

    let any_missing = candidates
        .iter()
        .any(|c| !states.contains_key(&(c.region.clone(), c.instance_id.clone())));
    let caller_account = if args.retire_missing && any_missing {
        let caller = crate::sts::caller(&sdk).await.map_err(|e| {
            anyhow::anyhow!("--retire-missing needs the caller's account: {e}; nothing was retired")
        })?;
        Some(caller.account_id)
    } else {
        None
    };

    let now = Utc::now();
    let by = crate::launched_by();
    for c in candidates {
        let state = states
            .get(&(c.region.clone(), c.instance_id.clone()))
            .cloned();
        let verdict = classify(
            &c,
            state.as_deref(),
            args.retire_missing,
            caller_account.as_deref(),
            now,
        );
        let (action, reason) = match verdict {
            Verdict::Keep(reason) => (Action::Keep, reason),
            Verdict::Missing(reason) => (Action::Missing, reason),
            Verdict::Retire(reason) if args.dry_run => (Action::WouldRetire, reason),
            Verdict::Retire(reason) => retire_one(registry.as_ref(), &c, &reason, &by, now).await,
        };
        items.push(Item {
            certname: c.certname,
            instance_id: Some(c.instance_id),
            group: c.group,
            region: Some(c.region),
            ec2_state: state,
            action,
            reason,
        });
    }
    items.sort_by(|a, b| a.certname.cmp(&b.certname));
    let report = Report::new(args.dry_run, items);
    print(&report, format)?;
    Ok(if report.failed > 0 {
        exit::PARTIAL
    } else {
        exit::OK
    })
}

/// Write one retirement; the audit line is logged only when this call wrote it.
async fn retire_one(
    registry: &dyn Registry,
    c: &Candidate,
    reason: &str,
    by: &str,
    now: DateTime<Utc>,
) -> (Action, String) {
    let record = Retirement::new(
        &c.certname,
        &c.instance_id,
        c.group.as_deref(),
        reason,
        by,
        now,
    );
    match registry.retire(&record).await {
        Ok(true) => {
            tracing::info!(
                target: "audit",
                certname = %c.certname,
                instance_id = %c.instance_id,
                group = c.group.as_deref().unwrap_or("-"),
                by,
                "retired"
            );
            (Action::Retired, reason.to_owned())
        }
        Ok(false) => (
            Action::AlreadyRetired,
            format!("{reason}; it was retired already"),
        ),
        Err(e) => (
            Action::Failed,
            format!("{reason}, but writing the retirement failed: {e}"),
        ),
    }
}

/// Every registration and member reap asks EC2 about (minus those retired already), and the
/// `no-instance` items for registrations without an instance id.
async fn candidates(
    registry: &Arc<dyn Registry>,
    configured_region: Option<&str>,
) -> anyhow::Result<(Vec<Candidate>, Vec<Item>)> {
    let retired: BTreeSet<String> = registry
        .list_retired()
        .await
        .context("listing retired certnames")?
        .into_iter()
        .collect();
    let mut out = Vec::new();
    let mut skipped = Vec::new();
    for e in crate::manage::entries(registry).await? {
        if retired.contains(&e.certname) {
            continue;
        }
        // The launched instance, else (a `conductor register` registration) the one whose
        // identity document the signed CSR proved.
        let Some(instance_id) = e.instance_id.or(e.proven_instance_id) else {
            skipped.push(Item {
                certname: e.certname,
                instance_id: None,
                group: None,
                region: None,
                ec2_state: None,
                action: Action::NoInstance,
                reason: "the registration names no instance and no CSR proved one".into(),
            });
            continue;
        };
        let region = match e.identity.as_ref().map(|i| i.region.clone()) {
            Some(r) => r,
            None => configured_region.map(str::to_owned).ok_or_else(|| {
                UsageError(format!(
                    "registration {} names no region and none is configured; set AWS_REGION, pass --region, or set `region:` in the config",
                    e.certname
                ))
            })?,
        };
        out.push(Candidate {
            certname: e.certname,
            instance_id,
            group: None,
            region,
            account_id: e.identity.map(|i| i.account_id),
            recorded_at: e.created_at,
        });
    }
    for (g, members) in crate::group::all(registry.as_ref()).await? {
        for m in members {
            if retired.contains(&m.certname) {
                continue;
            }
            out.push(Candidate {
                certname: m.certname,
                instance_id: m.instance_id,
                group: Some(g.name.clone()),
                region: g.region.clone(),
                account_id: Some(g.account_id.clone()),
                recorded_at: m.enrolled_at,
            });
        }
    }
    Ok((out, skipped))
}

/// The EC2 state of every candidate's instance, keyed by (region, instance id). Absent: EC2 did
/// not report it. The first call that fails (after the SDK's retries) ends it all.
async fn ask_ec2(
    sdk: &aws_config::SdkConfig,
    candidates: &[Candidate],
    settings: Ec2Settings,
) -> Result<BTreeMap<(String, String), String>, Ec2Error> {
    let mut by_region: BTreeMap<&str, BTreeSet<&str>> = BTreeMap::new();
    for c in candidates {
        by_region
            .entry(c.region.as_str())
            .or_default()
            .insert(c.instance_id.as_str());
    }
    let total: usize = by_region
        .values()
        .map(|ids| ids.len().div_ceil(settings.batch_size))
        .sum();
    let mut states = BTreeMap::new();
    let mut call = 0;
    for (region, ids) in by_region {
        let client = ec2::reap_client(sdk, region, settings.max_attempts, settings.attempt_timeout);
        let ids: Vec<String> = ids.into_iter().map(str::to_owned).collect();
        for batch in ids.chunks(settings.batch_size) {
            call += 1;
            let answer = ec2::instance_states(&client, batch)
                .await
                .map_err(|e| Ec2Error {
                    message: format!(
                        "DescribeInstances call {call} of {total} (region {region}, {} instance ids from {}) failed after at most {} attempts: {}",
                        batch.len(),
                        batch[0],
                        settings.max_attempts,
                        e.message
                    ),
                    fatal: true,
                })?;
            tracing::debug!(
                region,
                call,
                asked = batch.len(),
                answered = answer.len(),
                "DescribeInstances"
            );
            let asked: BTreeSet<&String> = batch.iter().collect();
            for (id, state) in answer {
                // Only what was asked counts: a filter EC2 ignored must not turn into a verdict.
                if asked.contains(&id) {
                    states.insert((region.to_owned(), id), state);
                }
            }
        }
    }
    Ok(states)
}

fn print(report: &Report, format: Format) -> anyhow::Result<()> {
    match format {
        Format::Json => output::print_json(report),
        Format::Text => {
            let rows: Vec<Vec<String>> = report
                .items
                .iter()
                .map(|i| {
                    vec![
                        i.certname.clone(),
                        i.instance_id.clone().unwrap_or_else(|| "-".into()),
                        i.group.clone().unwrap_or_else(|| "-".into()),
                        i.ec2_state.clone().unwrap_or_else(|| {
                            if i.instance_id.is_some() {
                                "(not found)".into()
                            } else {
                                "-".into()
                            }
                        }),
                        i.action.to_string(),
                    ]
                })
                .collect();
            output::table(
                &["CERTNAME", "INSTANCE", "GROUP", "EC2 STATE", "ACTION"],
                &rows,
            );
            for i in report
                .items
                .iter()
                .filter(|i| matches!(i.action, Action::Failed | Action::Missing))
            {
                eprintln!("{}: {}: {}", i.action, i.certname, i.reason);
            }
            let done = if report.dry_run {
                format!(
                    "{} would be retired (--dry-run: nothing written)",
                    report.would_retire
                )
            } else {
                format!("{} retired", report.retired)
            };
            eprintln!(
                "{done}, {} already retired, {} kept, {} missing, {} without instance, {} failed",
                report.already_retired,
                report.kept,
                report.missing,
                report.no_instance,
                report.failed
            );
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn candidate(age_minutes: i64, account: Option<&str>, now: DateTime<Utc>) -> Candidate {
        Candidate {
            certname: "0b7d3c59-5b4f-4f8e-9f0e-2d7f1f1f4a11".into(),
            instance_id: "i-0123456789abcdef0".into(),
            group: None,
            region: "us-east-1".into(),
            account_id: account.map(str::to_owned),
            recorded_at: now - chrono::Duration::minutes(age_minutes),
        }
    }

    const ACCOUNT: &str = "123456789012";

    #[test]
    fn terminated_is_retired_with_the_reason_ec2_gave() {
        let now = Utc::now();
        let c = candidate(5, Some(ACCOUNT), now);
        for retire_missing in [false, true] {
            assert_eq!(
                classify(&c, Some("terminated"), retire_missing, None, now),
                Verdict::Retire("EC2 reports i-0123456789abcdef0 terminated".into())
            );
        }
    }

    #[test]
    fn live_states_are_always_kept() {
        let now = Utc::now();
        let c = candidate(60 * 24, Some(ACCOUNT), now);
        for state in ["pending", "running", "stopping", "stopped", "shutting-down"] {
            for retire_missing in [false, true] {
                let v = classify(&c, Some(state), retire_missing, Some(ACCOUNT), now);
                assert_eq!(
                    v,
                    Verdict::Keep(format!("EC2 reports i-0123456789abcdef0 {state}")),
                    "{state}"
                );
            }
        }
        // A state this build does not know is kept too.
        assert!(matches!(
            classify(&c, Some("hibernating"), true, Some(ACCOUNT), now),
            Verdict::Keep(r) if r.contains("does not know")
        ));
    }

    #[test]
    fn missing_is_kept_without_retire_missing() {
        let now = Utc::now();
        let c = candidate(60 * 24, Some(ACCOUNT), now);
        assert!(matches!(
            classify(&c, None, false, Some(ACCOUNT), now),
            Verdict::Missing(r) if r.contains("--retire-missing")
        ));
    }

    #[test]
    fn missing_is_retired_only_after_two_hours_in_the_callers_account() {
        let now = Utc::now();
        // Old enough, same account: retired.
        let old = candidate(121, Some(ACCOUNT), now);
        assert!(matches!(
            classify(&old, None, true, Some(ACCOUNT), now),
            Verdict::Retire(r) if r.contains("does not report i-0123456789abcdef0")
        ));
        // Exactly two hours is old enough; a minute less is not.
        assert!(matches!(
            classify(
                &candidate(120, Some(ACCOUNT), now),
                None,
                true,
                Some(ACCOUNT),
                now
            ),
            Verdict::Retire(_)
        ));
        assert!(matches!(
            classify(&candidate(119, Some(ACCOUNT), now), None, true, Some(ACCOUNT), now),
            Verdict::Missing(r) if r.contains("younger than 2 hours")
        ));
        // A record from the future (clock skew) is young.
        assert!(matches!(
            classify(&candidate(-30, Some(ACCOUNT), now), None, true, Some(ACCOUNT), now),
            Verdict::Missing(r) if r.contains("younger than 2 hours")
        ));
    }

    #[test]
    fn missing_in_another_or_unknown_account_is_kept() {
        let now = Utc::now();
        let old = candidate(600, Some(ACCOUNT), now);
        assert!(matches!(
            classify(&old, None, true, Some("210987654321"), now),
            Verdict::Missing(r) if r.contains("account 123456789012, the caller in 210987654321")
        ));
        assert!(matches!(
            classify(&old, None, true, None, now),
            Verdict::Missing(r) if r.contains("caller's account is unknown")
        ));
        let unbound = candidate(600, None, now);
        assert!(matches!(
            classify(&unbound, None, true, Some(ACCOUNT), now),
            Verdict::Missing(r) if r.contains("names no account")
        ));
    }

    #[test]
    fn reasons_fit_a_retirement_record() {
        let now = Utc::now();
        let c = candidate(600, Some(ACCOUNT), now);
        for v in [
            classify(&c, Some("terminated"), false, None, now),
            classify(&c, None, true, Some(ACCOUNT), now),
        ] {
            let Verdict::Retire(reason) = v else {
                panic!("{v:?}")
            };
            let r = Retirement::new(&c.certname, &c.instance_id, None, &reason, "u@h", now);
            r.validate().unwrap_or_else(|e| panic!("{reason}: {e}"));
        }
    }

    #[test]
    fn report_counts_each_action() {
        let item = |action| Item {
            certname: "c".into(),
            instance_id: None,
            group: None,
            region: None,
            ec2_state: None,
            action,
            reason: String::new(),
        };
        let r = Report::new(
            false,
            vec![
                item(Action::Retired),
                item(Action::Retired),
                item(Action::Keep),
                item(Action::Missing),
                item(Action::Failed),
                item(Action::NoInstance),
                item(Action::AlreadyRetired),
            ],
        );
        assert_eq!(
            (
                r.retired,
                r.kept,
                r.missing,
                r.failed,
                r.no_instance,
                r.already_retired,
                r.would_retire
            ),
            (2, 1, 1, 1, 1, 1, 0)
        );
        let json = serde_json::to_value(&r).unwrap();
        assert_eq!(json["items"][0]["action"], "retired");
        assert_eq!(
            serde_json::to_value(Action::WouldRetire).unwrap(),
            "would-retire"
        );
    }
}
