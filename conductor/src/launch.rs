//! `conductor launch` and `conductor register`.
//!
//! With `launch.instance_identity` on (the default) the account id comes from STS
//! (`GetCallerIdentity`, once per run) before the first registration is written, and every
//! registration is created already bound to that account, the SDK's region and the image: the
//! signer requires the instance's AWS-signed identity document from the moment the record exists.

use crate::cli::{Cli, Format, LaunchArgs, RegisterArgs};
use crate::ec2::Launcher;
use crate::render::{self, Secret};
use crate::sts::Caller;
use crate::{UsageError, exit, output};
use anyhow::Context;
use schemas::conductor_config::ConductorConfig;
use schemas::registration::{IdentityBinding, Registration};
use schemas::registry::{Registry, RegistryError};
use serde::Serialize;
use std::io::IsTerminal;
use std::sync::{Arc, Mutex};

/// What happened to one launch.
#[derive(Debug, Clone, Serialize)]
pub struct LaunchResult {
    pub certname: String,
    pub instance_id: Option<String>,
    /// The EC2 state (`pending`, `running`), or `failed` / `skipped`.
    pub state: String,
    pub error: Option<String>,
}

struct Ctx {
    cfg: ConductorConfig,
    registry: Arc<dyn Registry>,
    launcher: Launcher,
    launched_by: String,
    /// The account and region every registration binds to; `None` when
    /// `launch.instance_identity` is off.
    caller: Option<Caller>,
    /// Set by the first launch that fails in a way every other launch would too.
    abort: Mutex<Option<String>>,
}

impl Ctx {
    fn aborted(&self) -> Option<String> {
        self.abort.lock().expect("abort lock").clone()
    }
    fn set_abort(&self, why: &str) {
        self.abort
            .lock()
            .expect("abort lock")
            .get_or_insert_with(|| why.to_owned());
    }
}

fn failed(certname: &str, instance_id: Option<String>, state: &str, error: String) -> LaunchResult {
    LaunchResult {
        certname: certname.to_owned(),
        instance_id,
        state: state.to_owned(),
        error: Some(error),
    }
}

/// Registry errors no retry or other launch would get past.
fn registry_fatal(e: &RegistryError) -> bool {
    matches!(
        e,
        RegistryError::NoSuchBucket { .. }
            | RegistryError::AccessDenied { .. }
            | RegistryError::Credentials { .. }
            | RegistryError::Unreachable { .. }
            | RegistryError::BadLocation(_)
    )
}

/// One launch, in order: registration, RunInstances, instance id into the registration.
async fn launch_one(ctx: Arc<Ctx>) -> LaunchResult {
    let certname = render::new_certname();
    if let Some(why) = ctx.aborted() {
        return failed(&certname, None, "skipped", format!("not attempted: {why}"));
    }
    let secret = match Secret::generate() {
        Ok(s) => s,
        Err(e) => return failed(&certname, None, "failed", format!("{e:#}")),
    };
    let ttl = chrono::Duration::from_std(ctx.cfg.registration_ttl)
        .unwrap_or(chrono::Duration::minutes(30));
    let mut record = Registration::new(
        &certname,
        &secret.sha256(),
        &ctx.launched_by,
        chrono::Utc::now(),
        ttl,
    );
    record.image_id = Some(ctx.launcher.image().to_owned());
    record.identity = ctx.caller.as_ref().map(Caller::binding);
    record.allowed_extensions = ctx.cfg.puppet.extensions.clone();

    let version = match ctx.registry.create(&record).await {
        Ok(v) => v,
        Err(e) => {
            let msg = format!("registering: {e}");
            if registry_fatal(&e) {
                ctx.set_abort(&msg);
            }
            return failed(&certname, None, "failed", msg);
        }
    };
    tracing::info!(certname, "registered");

    let text = render::render(&ctx.cfg, &certname, secret.expose());
    let user_data = match render::encode_for_ec2(&text) {
        Ok((bytes, _gzipped)) => bytes,
        Err(e) => {
            ctx.set_abort(&format!("{e:#}"));
            return undo_registration(&ctx, &certname, format!("{e:#}")).await;
        }
    };

    let launched = match ctx.launcher.run_instance(&certname, &user_data).await {
        Ok(r) => r,
        Err(e) => {
            if e.fatal {
                ctx.set_abort(&e.message);
            }
            return undo_registration(&ctx, &certname, e.message).await;
        }
    };
    let instance_id = launched.instance_id;
    tracing::info!(certname, instance_id, "launched");

    // The registration names the account STS reported; an instance EC2 says another account
    // owns would present an identity document the signer must refuse. Every launch of this run
    // would do the same, so stop them too.
    if let Some(caller) = &ctx.caller
        && launched.owner_id.as_deref() != Some(caller.account_id.as_str())
    {
        let msg = format!(
            "launched {instance_id}, but EC2 reports it owned by account {} while its registration binds to account {} (from sts:GetCallerIdentity), so its identity document could never match",
            launched.owner_id.as_deref().unwrap_or("(none given)"),
            caller.account_id
        );
        ctx.set_abort(&msg);
        return discard_launch(&ctx, &certname, instance_id, msg).await;
    }

    record.instance_id = Some(instance_id.clone());
    match ctx.registry.update(&record, &version).await {
        Ok(_) => LaunchResult {
            certname,
            instance_id: Some(instance_id),
            state: launched.state,
            error: None,
        },
        Err(e) => {
            // An instance whose registration lacks its id cannot pass the signer's checks: undo both.
            let msg = format!("launched {instance_id} but could not record its instance id ({e})");
            discard_launch(&ctx, &certname, instance_id, msg).await
        }
    }
}

/// Undo a launch that did happen but must not stand: terminate the instance, remove the
/// registration.
async fn discard_launch(
    ctx: &Ctx,
    certname: &str,
    instance_id: String,
    mut msg: String,
) -> LaunchResult {
    match ctx.launcher.terminate(&instance_id).await {
        Ok(()) => msg.push_str("; the instance was terminated"),
        Err(t) => msg.push_str(&format!(
            "; terminating it failed too ({t}): terminate {instance_id} by hand"
        )),
    }
    let mut r = undo_registration(ctx, certname, msg).await;
    r.instance_id = Some(instance_id);
    r
}

/// Remove the registration of a launch that did not happen.
async fn undo_registration(ctx: &Ctx, certname: &str, mut msg: String) -> LaunchResult {
    if let Err(e) = ctx.registry.delete(certname).await {
        tracing::error!(certname, error = %e, "could not remove the registration of a failed launch");
        msg.push_str(&format!(
            "; removing its registration failed ({e}): run `conductor revoke {certname}`"
        ));
    }
    failed(certname, None, "failed", msg)
}

fn image_of(cfg: &ConductorConfig, args: &LaunchArgs) -> anyhow::Result<String> {
    image_arg(cfg, args.image.as_deref())?.ok_or_else(|| {
        UsageError("no AMI to launch: pass --image AMI or set `launch.image` in the config".into())
            .into()
    })
}

/// The AMI `register` binds its registrations to: required while `launch.instance_identity` is on.
fn register_image(cfg: &ConductorConfig, args: &RegisterArgs) -> anyhow::Result<Option<String>> {
    let image = image_arg(cfg, args.image.as_deref())?;
    if image.is_none() && cfg.launch.instance_identity {
        return Err(UsageError(
            "register: no AMI to bind the registrations to. With `launch.instance_identity` on (the default) the signer checks that the instance's identity document names the image it was launched from: pass --image AMI or set `launch.image` in the config, or set `launch.instance_identity: false` to turn the identity proof off".into(),
        )
        .into());
    }
    Ok(image)
}

/// `--image` or else `launch.image`, checked to be an AMI id; `None` when neither is set.
fn image_arg(cfg: &ConductorConfig, arg: Option<&str>) -> anyhow::Result<Option<String>> {
    let Some(image) = arg.map(str::to_owned).or_else(|| cfg.launch.image.clone()) else {
        return Ok(None);
    };
    if !schemas::config::is_aws_id(&image, "ami-") {
        return Err(UsageError(format!(
            "--image: `{image}` is not an AMI id (ami- followed by 8 or 17 hex digits)"
        ))
        .into());
    }
    Ok(Some(image))
}

/// The account and region registrations bind to, or `None` when `launch.instance_identity` is off.
async fn caller_of(
    cfg: &ConductorConfig,
    sdk: &aws_config::SdkConfig,
) -> anyhow::Result<Option<Caller>> {
    if !cfg.launch.instance_identity {
        tracing::warn!(
            "`launch.instance_identity` is off: registrations do not require the instance identity document, so the signer accepts a CSR made anywhere that carries the secret"
        );
        return Ok(None);
    }
    Ok(Some(crate::sts::caller(sdk).await?))
}

/// Refuse a config whose generated user-data the agent would not accept.
fn self_check(cfg: &ConductorConfig) -> anyhow::Result<()> {
    match render::self_check(cfg) {
        Ok(warnings) => {
            for w in warnings {
                tracing::warn!("generated user-data: {w}");
            }
            Ok(())
        }
        Err(diags) => Err(UsageError(format!(
            "the user-data this config generates would be refused by the agent; fix `user_data_template`:\n{diags}"
        ))
        .into()),
    }
}

pub async fn launch(
    cfg: &ConductorConfig,
    cli: &Cli,
    args: &LaunchArgs,
    format: Format,
) -> anyhow::Result<u8> {
    let image = image_of(cfg, args)?;
    self_check(cfg)?;
    let count = args.count as usize;

    if args.dry_run {
        return dry_run(cfg, &image, count, format);
    }

    let registry = crate::open_registry(cfg, cli).await?;
    crate::preflight(registry.as_ref()).await?;
    let sdk = schemas::registry::aws::sdk_config(&crate::aws_options(cfg, cli)).await;
    // Before any registration exists: each is created already bound to this account.
    let caller = caller_of(cfg, &sdk).await?;
    let ctx = Arc::new(Ctx {
        cfg: cfg.clone(),
        registry,
        launcher: Launcher::new(&sdk, cfg.launch.clone(), image),
        launched_by: crate::launched_by(),
        caller,
        abort: Mutex::new(None),
    });

    let progress = if count > 1 && std::io::stderr().is_terminal() {
        let bar = indicatif::ProgressBar::new(count as u64);
        if let Ok(style) = indicatif::ProgressStyle::with_template(
            "{spinner} launching [{bar:30}] {pos}/{len} {msg}",
        ) {
            bar.set_style(style.progress_chars("=> "));
        }
        Some(bar)
    } else {
        None
    };

    let semaphore = Arc::new(tokio::sync::Semaphore::new(cfg.concurrency));
    let mut tasks = tokio::task::JoinSet::new();
    for index in 0..count {
        let ctx = Arc::clone(&ctx);
        let semaphore = Arc::clone(&semaphore);
        tasks.spawn(async move {
            let _permit = semaphore
                .acquire_owned()
                .await
                .expect("semaphore is never closed");
            (index, launch_one(ctx).await)
        });
    }
    let mut results: Vec<(usize, LaunchResult)> = Vec::with_capacity(count);
    while let Some(joined) = tasks.join_next().await {
        let (index, result) = joined.context("a launch task panicked")?;
        if let Some(bar) = &progress {
            bar.inc(1);
            if result.error.is_some() {
                bar.set_message("(with failures)");
            }
        }
        results.push((index, result));
    }
    if let Some(bar) = progress {
        bar.finish_and_clear();
    }
    results.sort_by_key(|(i, _)| *i);
    let results: Vec<LaunchResult> = results.into_iter().map(|(_, r)| r).collect();
    output::launch_results(&results, format)?;
    Ok(exit_code(&results))
}

/// 0 when every launch succeeded, 1 when none did, 3 (partial failure) otherwise.
pub fn exit_code(results: &[LaunchResult]) -> u8 {
    let failures = results.iter().filter(|r| r.error.is_some()).count();
    if failures == 0 {
        exit::OK
    } else if failures == results.len() {
        exit::FAILED
    } else {
        exit::PARTIAL
    }
}

#[derive(Serialize)]
struct DryRunItem {
    certname: String,
    image_id: String,
    instance_type: String,
    user_data: String,
    user_data_bytes: usize,
    gzipped: bool,
}

fn dry_run(cfg: &ConductorConfig, image: &str, count: usize, format: Format) -> anyhow::Result<u8> {
    let mut items = Vec::new();
    for _ in 0..count {
        let certname = render::new_certname();
        let text = render::render(cfg, &certname, render::REDACTED);
        // Size as it would be sent: with a real (same-length) secret in place.
        let real = render::render(cfg, &certname, &"0".repeat(64));
        let (bytes, gzipped) = render::encode_for_ec2(&real)?;
        items.push(DryRunItem {
            certname,
            image_id: image.to_owned(),
            instance_type: cfg.launch.instance_type.clone(),
            user_data: text,
            user_data_bytes: bytes.len(),
            gzipped,
        });
    }
    match format {
        Format::Json => {
            output::print_json(&serde_json::json!({ "dry_run": true, "launches": items }))?
        }
        Format::Text => {
            for (i, item) in items.iter().enumerate() {
                eprintln!(
                    "dry run {}/{count}: would register {} and launch {} ({}), user-data {} bytes{}; nothing was changed",
                    i + 1,
                    item.certname,
                    item.image_id,
                    item.instance_type,
                    item.user_data_bytes,
                    if item.gzipped { " gzipped" } else { "" }
                );
                print!("{}", item.user_data);
            }
        }
    }
    Ok(exit::OK)
}

#[derive(Serialize)]
struct Registered {
    certname: String,
    expires_at: chrono::DateTime<chrono::Utc>,
    /// The AMI the instance must be launched from (when the identity proof is on).
    image_id: Option<String>,
    /// What the instance's identity document must name; `null` when the proof is off.
    identity: Option<IdentityBinding>,
    /// Contains the one-time secret: handle it like a password.
    user_data: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    file: Option<String>,
}

pub async fn register(
    cfg: &ConductorConfig,
    cli: &Cli,
    args: &RegisterArgs,
    format: Format,
) -> anyhow::Result<u8> {
    let image = register_image(cfg, args)?;
    self_check(cfg)?;
    if args.count > 1 && args.out_dir.is_none() && format == Format::Text {
        return Err(UsageError(
            "--count > 1 writes several user-data documents: add --out-dir DIR (one file each) or --output json".into(),
        )
        .into());
    }
    if let Some(dir) = &args.out_dir {
        anyhow::ensure!(
            dir.is_dir(),
            UsageError(format!(
                "--out-dir {}: not an existing directory",
                dir.display()
            ))
        );
    }
    let registry = crate::open_registry(cfg, cli).await?;
    crate::preflight(registry.as_ref()).await?;
    let sdk = schemas::registry::aws::sdk_config(&crate::aws_options(cfg, cli)).await;
    // Before any registration exists: each is created already bound to this account.
    let caller = caller_of(cfg, &sdk).await?;
    let ttl =
        chrono::Duration::from_std(cfg.registration_ttl).unwrap_or(chrono::Duration::minutes(30));
    let by = crate::launched_by();
    let mut done = Vec::new();
    for _ in 0..args.count {
        let certname = render::new_certname();
        let secret = Secret::generate()?;
        let mut record =
            Registration::new(&certname, &secret.sha256(), &by, chrono::Utc::now(), ttl);
        record.allowed_extensions = cfg.puppet.extensions.clone();
        // No instance id: the binding is to account, region and image only (see `register --help`).
        record.image_id = image.clone();
        record.identity = caller.as_ref().map(Caller::binding);
        registry
            .create(&record)
            .await
            .with_context(|| format!("registering {certname}"))?;
        let user_data = render::render(cfg, &certname, secret.expose());
        let file = match &args.out_dir {
            Some(dir) => {
                let path = dir.join(format!("{certname}.yaml"));
                write_private(&path, user_data.as_bytes())
                    .with_context(|| format!("writing {}", path.display()))?;
                Some(path.display().to_string())
            }
            None => None,
        };
        tracing::info!(certname, "registered");
        done.push(Registered {
            certname,
            expires_at: record.expires_at,
            image_id: record.image_id,
            identity: record.identity,
            user_data,
            file,
        });
    }
    match format {
        Format::Json => output::print_json(&done)?,
        Format::Text => {
            for r in &done {
                match &r.file {
                    Some(f) => println!("{}\t{f}", r.certname),
                    None => print!("{}", r.user_data),
                }
            }
        }
    }
    Ok(exit::OK)
}

/// Write a file holding a secret: mode 0600, via a temp file, fsync and rename.
fn write_private(path: &std::path::Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let dir = path.parent().unwrap_or(std::path::Path::new("."));
    let tmp = dir.join(format!(
        ".{}.tmp",
        path.file_name()
            .and_then(|n| n.to_str())
            .unwrap_or("user-data")
    ));
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&tmp)?;
    let written = f
        .write_all(bytes)
        .and_then(|()| f.sync_all())
        .and_then(|()| std::fs::rename(&tmp, path));
    if written.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    written?;
    std::fs::File::open(dir)?.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn result(ok: bool) -> LaunchResult {
        if ok {
            LaunchResult {
                certname: "c".into(),
                instance_id: Some("i-1".into()),
                state: "pending".into(),
                error: None,
            }
        } else {
            failed("c", None, "failed", "EC2 refused RunInstances".into())
        }
    }

    #[test]
    fn exit_codes_tell_partial_from_total_failure() {
        assert_eq!(exit_code(&[result(true), result(true)]), exit::OK);
        assert_eq!(exit_code(&[result(false), result(false)]), exit::FAILED);
        assert_eq!(exit_code(&[result(true), result(false)]), exit::PARTIAL);
    }
}
