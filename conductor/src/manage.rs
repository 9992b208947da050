//! `conductor list`, `revoke` and `prune`.

use crate::cli::Format;
use crate::{exit, output};
use anyhow::Context;
use chrono::{DateTime, Utc};
use schemas::registration::{IdentityBinding, Registration, State};
use schemas::registry::Registry;
use serde::Serialize;
use std::sync::Arc;

/// Whether a registration requires the instance identity document in the CSR.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Proof {
    /// The CSR must carry an identity document matching [`Entry::identity`].
    Required,
    /// Written with `launch.instance_identity: false`: the signer signs without the proof.
    Off,
    /// A format version 1 record, from before identity binding: no proof (the signer accepts it
    /// only if its config allows legacy registrations).
    Legacy,
}

impl Proof {
    pub fn of(r: &Registration) -> Proof {
        if r.is_legacy() {
            Proof::Legacy
        } else if r.identity.is_some() {
            Proof::Required
        } else {
            Proof::Off
        }
    }
}

impl std::fmt::Display for Proof {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Proof::Required => "required",
            Proof::Off => "off",
            Proof::Legacy => "legacy",
        })
    }
}

/// One registration as `list` shows it.
#[derive(Debug, Clone, Serialize)]
pub struct Entry {
    pub certname: String,
    pub state: State,
    /// The record's format version: for registrations 1 means before identity binding; for
    /// group members (`group` set) it is the member record's version.
    pub version: u32,
    /// Whether the signer requires the instance identity document for it.
    pub proof: Proof,
    /// What the identity document must name (with `image_id`, and `instance_id` when set).
    pub identity: Option<IdentityBinding>,
    pub instance_id: Option<String>,
    /// The instance whose identity document the signed CSR proved (recorded at consumption):
    /// for `conductor register` registrations, which name no instance, the only instance id.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub proven_instance_id: Option<String>,
    pub image_id: Option<String>,
    pub created_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
    pub launched_by: String,
    pub consumed_at: Option<DateTime<Utc>>,
    /// For a member of an enrollment group: the group (it has no registration; `state` is
    /// `consumed` from its enrollment on).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub group: Option<String>,
}

/// Read every registration (16 reads in flight). A registration deleted meanwhile is skipped.
pub async fn entries(registry: &Arc<dyn Registry>) -> anyhow::Result<Vec<Entry>> {
    let names = registry.list().await.context("listing registrations")?;
    let now = Utc::now();
    let semaphore = Arc::new(tokio::sync::Semaphore::new(16));
    let mut tasks = tokio::task::JoinSet::new();
    for name in names {
        let (registry, semaphore) = (Arc::clone(registry), Arc::clone(&semaphore));
        tasks.spawn(async move {
            let _permit = semaphore
                .acquire_owned()
                .await
                .expect("semaphore is never closed");
            registry
                .get(&name)
                .await
                .with_context(|| format!("reading registration {name}"))
        });
    }
    let mut entries = Vec::new();
    while let Some(joined) = tasks.join_next().await {
        if let Some((r, _)) = joined.context("a registry read panicked")?? {
            entries.push(Entry {
                state: r.state(now),
                version: r.version,
                proof: Proof::of(&r),
                consumed_at: r.consumed.as_ref().map(|c| c.at),
                proven_instance_id: r.consumed.as_ref().and_then(|c| c.instance_id.clone()),
                certname: r.certname,
                instance_id: r.instance_id,
                image_id: r.image_id,
                created_at: r.created_at,
                expires_at: r.expires_at,
                launched_by: r.launched_by,
                identity: r.identity,
                group: None,
            });
        }
    }
    entries.sort_by(|a, b| {
        a.created_at
            .cmp(&b.created_at)
            .then_with(|| a.certname.cmp(&b.certname))
    });
    Ok(entries)
}

/// Every enrolled member of every enrollment group, as list entries.
pub async fn member_entries(registry: &Arc<dyn Registry>) -> anyhow::Result<Vec<Entry>> {
    let mut out = Vec::new();
    for (g, members) in crate::group::all(registry.as_ref()).await? {
        for m in members {
            out.push(Entry {
                certname: m.certname,
                state: State::Consumed,
                version: m.version,
                proof: Proof::Required,
                identity: Some(IdentityBinding {
                    account_id: g.account_id.clone(),
                    region: g.region.clone(),
                }),
                instance_id: Some(m.instance_id),
                proven_instance_id: None,
                image_id: Some(m.image_id),
                created_at: m.enrolled_at,
                expires_at: g.expires_at,
                launched_by: format!("group {}", g.name),
                consumed_at: Some(m.enrolled_at),
                group: Some(g.name.clone()),
            });
        }
    }
    Ok(out)
}

pub async fn list(registry: &Arc<dyn Registry>, format: Format) -> anyhow::Result<u8> {
    let mut entries = entries(registry).await?;
    entries.extend(member_entries(registry).await?);
    match format {
        Format::Json => output::print_json(&entries)?,
        Format::Text => {
            let rows: Vec<Vec<String>> = entries
                .iter()
                .map(|e| {
                    vec![
                        e.certname.clone(),
                        e.state.to_string(),
                        e.proof.to_string(),
                        e.instance_id.clone().unwrap_or_else(|| "-".into()),
                        e.expires_at.format("%Y-%m-%dT%H:%M:%SZ").to_string(),
                        e.group.clone().unwrap_or_else(|| "-".into()),
                    ]
                })
                .collect();
            output::table(
                &["CERTNAME", "STATE", "PROOF", "INSTANCE", "EXPIRES", "GROUP"],
                &rows,
            );
        }
    }
    Ok(exit::OK)
}

#[derive(Serialize)]
struct Removed {
    certname: String,
    /// `revoked`, `not registered`, `pruned`.
    result: String,
}

pub async fn revoke(
    registry: &Arc<dyn Registry>,
    certnames: &[String],
    format: Format,
) -> anyhow::Result<u8> {
    let mut done = Vec::new();
    for name in certnames {
        let existed = registry
            .get(name)
            .await
            .with_context(|| format!("reading registration {name}"))?
            .is_some();
        registry
            .delete(name)
            .await
            .with_context(|| format!("revoking {name}"))?;
        tracing::info!(certname = %name, existed, "revoked");
        done.push(Removed {
            certname: name.clone(),
            result: if existed { "revoked" } else { "not registered" }.into(),
        });
    }
    report(&done, format)?;
    Ok(exit::OK)
}

pub async fn prune(registry: &Arc<dyn Registry>, format: Format) -> anyhow::Result<u8> {
    let mut done = Vec::new();
    for e in entries(registry).await? {
        // Expired means unconsumed and past its deadline; the signer refuses those, so removing
        // one cannot race a signature.
        if e.state == State::Expired {
            registry
                .delete(&e.certname)
                .await
                .with_context(|| format!("removing {}", e.certname))?;
            tracing::info!(certname = %e.certname, "pruned");
            done.push(Removed {
                certname: e.certname,
                result: "pruned".into(),
            });
        }
    }
    report(&done, format)?;
    if format == Format::Text && done.is_empty() {
        eprintln!("no expired registrations");
    }
    Ok(exit::OK)
}

fn report(done: &[Removed], format: Format) -> anyhow::Result<()> {
    match format {
        Format::Json => output::print_json(&done),
        Format::Text => {
            for r in done {
                println!("{}\t{}", r.certname, r.result);
            }
            Ok(())
        }
    }
}
