//! `conductor group create|list|show|revoke|user-data`: enrollment groups for instances that
//! AWS launches (Auto Scaling groups, launch templates). See [`schemas::group`] for the record,
//! the certname scheme and the order in which the signer records members.

use crate::cli::{Cli, Format, GroupCommand, GroupCreateArgs, GroupNameArgs};
use crate::{UsageError, exit, output};
use anyhow::Context;
use chrono::{DateTime, Utc};
use schemas::conductor_config::ConductorConfig;
use schemas::group::{EnrollmentGroup, GROUP_VERSION, GroupState, Member, Revocation};
use schemas::registry::{Registry, RegistryError};
use serde::Serialize;
use std::collections::BTreeMap;
use std::sync::Arc;

/// Run one `group` subcommand.
pub async fn run(cli: &Cli, cmd: &GroupCommand, format: Format) -> anyhow::Result<u8> {
    match cmd {
        GroupCommand::Create(args) => {
            let cfg = crate::load_config(&args.config.config)?;
            create(&cfg, cli, args, format).await
        }
        GroupCommand::List(args) => {
            let cfg = crate::load_config(&args.config)?;
            list(&crate::open_registry(&cfg, cli).await?, format).await
        }
        GroupCommand::Show(args) => {
            let cfg = checked_name(args)?;
            show(&crate::open_registry(&cfg, cli).await?, &args.name, format).await
        }
        GroupCommand::Revoke(args) => {
            let cfg = checked_name(args)?;
            revoke(&crate::open_registry(&cfg, cli).await?, &args.name, format).await
        }
        GroupCommand::UserData(args) => {
            let cfg = checked_name(args)?;
            let registry = crate::open_registry(&cfg, cli).await?;
            user_data(&cfg, registry.as_ref(), &args.name, format).await
        }
    }
}

fn checked_name(args: &GroupNameArgs) -> anyhow::Result<ConductorConfig> {
    schemas::group::check_group_name(&args.name).map_err(|e| UsageError(format!("NAME: {e}")))?;
    crate::load_config(&args.config.config)
}

/// The group `create` would write (no AWS call): everything but the account and region.
pub fn build_group(
    cfg: &ConductorConfig,
    args: &GroupCreateArgs,
    account_id: &str,
    region: &str,
    now: DateTime<Utc>,
) -> Result<EnrollmentGroup, UsageError> {
    let images = if args.images.is_empty() {
        cfg.launch.image.clone().into_iter().collect()
    } else {
        args.images.clone()
    };
    if images.is_empty() {
        return Err(UsageError(
            "group create: no image: pass --image AMI (repeat for several) or set `launch.image` in the config".into(),
        ));
    }
    let ttl = schemas::config::parse_duration(&args.ttl)
        .map_err(|e| UsageError(format!("--ttl `{}`: {e}", args.ttl)))?;
    if ttl < std::time::Duration::from_secs(60)
        || ttl > std::time::Duration::from_secs(365 * 86_400)
    {
        return Err(UsageError(format!(
            "--ttl `{}`: must be between 1m and 365d",
            args.ttl
        )));
    }
    let extensions = if args.extensions.is_empty() {
        cfg.puppet.extensions.clone()
    } else {
        let mut map = BTreeMap::new();
        for e in &args.extensions {
            let Some((k, v)) = e.split_once('=') else {
                return Err(UsageError(format!(
                    "--extension `{e}`: write NAME=VALUE, e.g. --extension pp_role=web"
                )));
            };
            if map.insert(k.to_owned(), v.to_owned()).is_some() {
                return Err(UsageError(format!("--extension: `{k}` is given twice")));
            }
        }
        map
    };
    let group = EnrollmentGroup {
        version: GROUP_VERSION,
        name: args.name.clone(),
        account_id: account_id.to_owned(),
        region: region.to_owned(),
        image_ids: images,
        launch_template_id: args.launch_template.clone(),
        asg_name: args.asg.clone(),
        extensions,
        max_members: args.max_members,
        created_at: now,
        expires_at: now
            + chrono::Duration::from_std(ttl).unwrap_or_else(|_| chrono::Duration::days(30)),
        created_by: crate::launched_by(),
        revoked: None,
    };
    group
        .validate()
        .map_err(|e| UsageError(format!("group create {}: {e}", args.name)))?;
    Ok(group)
}

async fn create(
    cfg: &ConductorConfig,
    cli: &Cli,
    args: &GroupCreateArgs,
    format: Format,
) -> anyhow::Result<u8> {
    schemas::group::check_group_name(&args.name).map_err(|e| UsageError(format!("NAME: {e}")))?;
    // Everything that needs no AWS call is checked first.
    build_group(cfg, args, "000000000000", "us-east-1", Utc::now())?;
    let registry = crate::open_registry(cfg, cli).await?;
    crate::preflight(registry.as_ref()).await?;
    let sdk = schemas::registry::aws::sdk_config(&crate::aws_options(cfg, cli)).await;
    let caller = crate::sts::caller(&sdk).await?;
    let group = build_group(cfg, args, &caller.account_id, &caller.region, Utc::now())?;
    // The user-data must be what the agent accepts before anything is written.
    user_data_checked(cfg, &group)?;
    match registry.create_group(&group).await {
        Ok(_) => {}
        Err(RegistryError::GroupExists(n)) => {
            return Err(UsageError(format!(
                "group `{n}` already exists; a group name is never reused: pick another name (`conductor group show {n}` shows the existing one)"
            ))
            .into());
        }
        Err(e) => return Err(e).context("creating the group"),
    }
    tracing::info!(group = %group.name, "group created");
    let view = GroupView::of(&group, Vec::new(), Utc::now());
    match format {
        Format::Json => output::print_json(&view)?,
        Format::Text => {
            print_group(&view);
            eprintln!(
                "next: conductor group user-data -c {} {} > user-data.yaml, then use it in the launch template",
                args.config.config.display(),
                group.name
            );
        }
    }
    Ok(exit::OK)
}

/// A group as `list` and `show` print it.
#[derive(Debug, Clone, Serialize)]
pub struct GroupView {
    pub name: String,
    pub state: GroupState,
    pub account_id: String,
    pub region: String,
    pub image_ids: Vec<String>,
    pub launch_template_id: Option<String>,
    pub asg_name: Option<String>,
    pub extensions: BTreeMap<String, String>,
    /// The certname members use, with `%i` for the instance id.
    pub certname_template: String,
    pub members: usize,
    pub max_members: u32,
    pub created_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
    pub created_by: String,
    pub revoked: Option<Revocation>,
    /// Only in `show`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub member_list: Option<Vec<Member>>,
}

impl GroupView {
    fn of(g: &EnrollmentGroup, members: Vec<Member>, now: DateTime<Utc>) -> GroupView {
        GroupView {
            name: g.name.clone(),
            state: g.state(now),
            account_id: g.account_id.clone(),
            region: g.region.clone(),
            image_ids: g.image_ids.clone(),
            launch_template_id: g.launch_template_id.clone(),
            asg_name: g.asg_name.clone(),
            extensions: g.extensions.clone(),
            certname_template: schemas::group::certname_template(&g.name),
            members: members.len(),
            max_members: g.max_members,
            created_at: g.created_at,
            expires_at: g.expires_at,
            created_by: g.created_by.clone(),
            revoked: g.revoked.clone(),
            member_list: None,
        }
    }
}

/// Every member of `group`, by slot. A slot whose record cannot be read is an error.
pub async fn members(registry: &dyn Registry, group: &str) -> anyhow::Result<Vec<Member>> {
    let mut out = Vec::new();
    for slot in registry
        .list_slots(group)
        .await
        .with_context(|| format!("listing the members of {group}"))?
    {
        if let Some(m) = registry
            .get_member(group, slot)
            .await
            .with_context(|| format!("reading member slot {slot} of {group}"))?
        {
            out.push(m);
        }
    }
    Ok(out)
}

/// Every group with its members.
pub async fn all(registry: &dyn Registry) -> anyhow::Result<Vec<(EnrollmentGroup, Vec<Member>)>> {
    let mut out = Vec::new();
    for name in registry.list_groups().await.context("listing groups")? {
        if let Some((g, _)) = registry
            .get_group(&name)
            .await
            .with_context(|| format!("reading group {name}"))?
        {
            let m = members(registry, &name).await?;
            out.push((g, m));
        }
    }
    Ok(out)
}

async fn list(registry: &Arc<dyn Registry>, format: Format) -> anyhow::Result<u8> {
    let now = Utc::now();
    let views: Vec<GroupView> = all(registry.as_ref())
        .await?
        .into_iter()
        .map(|(g, m)| GroupView::of(&g, m, now))
        .collect();
    match format {
        Format::Json => output::print_json(&views)?,
        Format::Text => {
            let rows: Vec<Vec<String>> = views
                .iter()
                .map(|v| {
                    vec![
                        v.name.clone(),
                        v.state.to_string(),
                        format!("{}/{}", v.members, v.max_members),
                        v.image_ids.join(","),
                        v.asg_name
                            .clone()
                            .or_else(|| v.launch_template_id.clone())
                            .unwrap_or_else(|| "-".into()),
                        v.expires_at.format("%Y-%m-%dT%H:%M:%SZ").to_string(),
                    ]
                })
                .collect();
            output::table(
                &[
                    "GROUP",
                    "STATE",
                    "MEMBERS",
                    "IMAGES",
                    "ASG/TEMPLATE",
                    "EXPIRES",
                ],
                &rows,
            );
        }
    }
    Ok(exit::OK)
}

async fn read_group(
    registry: &dyn Registry,
    name: &str,
) -> anyhow::Result<(EnrollmentGroup, schemas::registry::Version)> {
    registry
        .get_group(name)
        .await
        .with_context(|| format!("reading group {name}"))?
        .ok_or_else(|| {
            UsageError(format!(
                "no enrollment group `{name}` in {}; `conductor group list` shows the groups",
                registry.location()
            ))
            .into()
        })
}

async fn show(registry: &Arc<dyn Registry>, name: &str, format: Format) -> anyhow::Result<u8> {
    let (g, _) = read_group(registry.as_ref(), name).await?;
    let m = members(registry.as_ref(), name).await?;
    let mut view = GroupView::of(&g, m.clone(), Utc::now());
    view.member_list = Some(m);
    match format {
        Format::Json => output::print_json(&view)?,
        Format::Text => print_group(&view),
    }
    Ok(exit::OK)
}

fn print_group(v: &GroupView) {
    let ext: Vec<String> = v
        .extensions
        .iter()
        .map(|(k, x)| format!("{k}={x}"))
        .collect();
    let rows = [
        ("group", v.name.clone()),
        ("state", v.state.to_string()),
        ("account", v.account_id.clone()),
        ("region", v.region.clone()),
        ("images", v.image_ids.join(", ")),
        (
            "launch template",
            v.launch_template_id.clone().unwrap_or_else(|| "-".into()),
        ),
        ("asg", v.asg_name.clone().unwrap_or_else(|| "-".into())),
        ("extensions", ext.join(", ")),
        ("certname", v.certname_template.clone()),
        ("members", format!("{} of {}", v.members, v.max_members)),
        (
            "created",
            format!("{} by {}", v.created_at.to_rfc3339(), v.created_by),
        ),
        ("expires", v.expires_at.to_rfc3339()),
    ];
    for (k, x) in rows {
        println!("{k:<16} {x}");
    }
    if let Some(r) = &v.revoked {
        println!("{:<16} {} by {}", "revoked", r.at.to_rfc3339(), r.by);
    }
    if let Some(list) = &v.member_list
        && !list.is_empty()
    {
        println!();
        let rows: Vec<Vec<String>> = list
            .iter()
            .map(|m| {
                vec![
                    m.slot.to_string(),
                    m.certname.clone(),
                    m.instance_id.clone(),
                    m.enrolled_at.format("%Y-%m-%dT%H:%M:%SZ").to_string(),
                    m.by.clone(),
                ]
            })
            .collect();
        output::table(&["SLOT", "CERTNAME", "INSTANCE", "ENROLLED", "BY"], &rows);
    }
}

#[derive(Serialize)]
struct Revoked {
    group: String,
    /// `revoked`, or `already revoked`.
    result: String,
    revoked: Revocation,
}

async fn revoke(registry: &Arc<dyn Registry>, name: &str, format: Format) -> anyhow::Result<u8> {
    let (result, revocation) = loop {
        let (mut g, version) = read_group(registry.as_ref(), name).await?;
        if let Some(r) = g.revoked {
            break ("already revoked", r);
        }
        let r = Revocation {
            at: Utc::now(),
            by: crate::launched_by(),
        };
        g.revoked = Some(r.clone());
        match registry.update_group(&g, &version).await {
            Ok(_) => break ("revoked", r),
            // Written meanwhile (another revoke): read again.
            Err(RegistryError::GroupConflict(_)) => continue,
            Err(e) => return Err(e).with_context(|| format!("revoking group {name}")),
        }
    };
    tracing::info!(group = name, result, "group revoked");
    let out = Revoked {
        group: name.to_owned(),
        result: result.to_owned(),
        revoked: revocation,
    };
    match format {
        Format::Json => output::print_json(&out)?,
        Format::Text => {
            println!("{}\t{}", out.group, out.result);
            eprintln!(
                "members that already enrolled keep their certificates; revoke them on the CA (`puppetserver ca revoke --certname {name}-i-…`) if they must go"
            );
        }
    }
    Ok(exit::OK)
}

/// The group's user-data, checked with the agent's own parser.
fn user_data_checked(cfg: &ConductorConfig, group: &EnrollmentGroup) -> anyhow::Result<String> {
    let text = crate::render::render_group(cfg, group);
    match schemas::userdata::parse("generated user-data", text.as_bytes()) {
        Ok(parsed) => {
            for w in &parsed.warnings {
                tracing::warn!("generated user-data: {w}");
            }
        }
        Err(d) => {
            return Err(UsageError(format!(
                "the user-data this config generates for group {} would be refused by the agent; fix `user_data_template`:\n{d}",
                group.name
            ))
            .into());
        }
    }
    crate::render::encode_for_ec2(&text)?;
    Ok(text)
}

#[derive(Serialize)]
struct UserData {
    group: String,
    certname_template: String,
    user_data: String,
}

async fn user_data(
    cfg: &ConductorConfig,
    registry: &dyn Registry,
    name: &str,
    format: Format,
) -> anyhow::Result<u8> {
    let (g, _) = read_group(registry, name).await?;
    if g.state(Utc::now()) != GroupState::Active {
        tracing::warn!(
            "group {name} is {}: the signer refuses its members",
            g.state(Utc::now())
        );
    }
    let text = user_data_checked(cfg, &g)?;
    match format {
        Format::Json => output::print_json(&UserData {
            group: g.name.clone(),
            certname_template: schemas::group::certname_template(&g.name),
            user_data: text,
        })?,
        Format::Text => print!("{text}"),
    }
    Ok(exit::OK)
}
