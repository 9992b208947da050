//! Helpers shared by the conductor's integration tests.
#![allow(dead_code)]

use aws_sdk_s3::config::Credentials;
use schemas::registry::S3Registry;
use testkit::moto::{Moto, REGION};

/// An AWS config for the test's own checks (reading what the conductor did). The conductor
/// itself is pointed at moto only through environment variables (`Moto::command`).
pub async fn sdk(moto: &Moto) -> aws_config::SdkConfig {
    aws_config::defaults(aws_config::BehaviorVersion::latest())
        .http_client(schemas::registry::aws::http_client())
        .region(aws_config::Region::new(REGION))
        .endpoint_url(moto.endpoint())
        .credentials_provider(Credentials::new("testing", "testing", None, None, "moto"))
        .load()
        .await
}

pub async fn s3_registry(moto: &Moto, bucket: &str, prefix: &str) -> S3Registry {
    let sdk = sdk(moto).await;
    let client = aws_sdk_s3::Client::from_conf(
        aws_sdk_s3::config::Builder::from(&sdk)
            .force_path_style(true)
            .build(),
    );
    S3Registry::with_client(client, bucket.to_owned(), prefix.to_owned())
}

pub async fn ec2(moto: &Moto) -> aws_sdk_ec2::Client {
    aws_sdk_ec2::Client::new(&sdk(moto).await)
}

/// The examples' throwaway Puppet CA certificate.
pub fn ca_pem_path() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/puppet-ca.pem")
}

/// Write a conductor.yaml for `registry` into `dir`, with `extra` appended.
pub fn write_config(dir: &std::path::Path, registry: &str, extra: &str) -> std::path::PathBuf {
    let path = dir.join("conductor.yaml");
    let text = format!(
        "registry: {registry}\nconcurrency: 8\nlaunch:\n  image: {ami}\n  instance_type: t3.micro\n  tags: {{suite: conductor}}\npuppet:\n  server: puppet.example.net\n  ca_cert_file: {ca}\n  extensions:\n    pp_role: web\n{extra}",
        ami = testkit::moto::AMI,
        ca = ca_pem_path().display()
    );
    std::fs::write(&path, text).unwrap();
    path
}

/// The account moto reports (STS `GetCallerIdentity`, EC2 `OwnerId`) unless `MOTO_ACCOUNT_ID` is set.
pub const MOTO_ACCOUNT: &str = "123456789012";

/// Replace `from` (which must occur) with `to` in the file at `path`.
pub fn edit_config(path: &std::path::Path, from: &str, to: &str) {
    let text = std::fs::read_to_string(path).unwrap();
    assert!(text.contains(from), "`{from}` is not in {}", path.display());
    std::fs::write(path, text.replacen(from, to, 1)).unwrap();
}

/// Turn `launch.instance_identity` off in a config from [`write_config`].
pub fn identity_off(path: &std::path::Path) {
    edit_config(
        path,
        "  instance_type: t3.micro\n",
        "  instance_type: t3.micro\n  instance_identity: false\n",
    );
}

/// Remove `launch.image` from a config from [`write_config`].
pub fn no_image(path: &std::path::Path) {
    edit_config(path, &format!("  image: {}\n", testkit::moto::AMI), "");
}

/// Run the conductor binary against `moto` (env vars only). Returns (exit code, stdout, stderr).
pub fn conductor(moto: &Moto, args: &[&str]) -> (i32, String, String) {
    conductor_with_env(moto, &[], args)
}

/// [`conductor`] with `env` set over moto's (e.g. `AWS_ENDPOINT_URL` of a fault proxy).
pub fn conductor_with_env(
    moto: &Moto,
    env: &[(&str, &str)],
    args: &[&str],
) -> (i32, String, String) {
    let out = moto
        .command(env!("CARGO_BIN_EXE_conductor"))
        .envs(env.iter().copied())
        .args(args)
        .output()
        .expect("running conductor");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}
